//! Acceptance 3 of the retail assistant, independent of how good the model is: over every
//! scripted evaluation case, with language models that route and call tools badly on purpose
//! (seeded random labels and tools), no reply and no log holds another customer's data or the
//! personal data a customer typed, and the model never even sees that personal data.

use std::sync::{Arc, Mutex};

use kiln_core::{
    CancelToken, ChatMessage, Embedder, Embedding, EmbeddingInput, FinishReason, GenerationOutput,
    GenerationRequest, ImageSource, Prompt, ResponseFormat, StreamEvent, TextGenerator, Timings,
    Usage,
};
use kiln_retail::data::read_jsonl;
use kiln_retail::eval::{Case, Summary, score};
use kiln_retail::{LabelledText, RetailAssistant, RetailConfig, Store, StoreData};
use serde_json::{Value, json};

/// A model that answers every constrained request with a seeded random choice the schema allows,
/// and remembers every prompt it was shown.
struct Chaos {
    state: Mutex<u64>,
    seen: Mutex<Vec<String>>,
}

impl Chaos {
    fn new(seed: u64) -> Self {
        Self {
            state: Mutex::new(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1)),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn pick<'a>(&self, options: &'a [Value]) -> &'a Value {
        let mut s = self.state.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        &options[(*s % options.len() as u64) as usize]
    }
}

impl TextGenerator for Chaos {
    fn model_name(&self) -> &str {
        "chaos"
    }
    fn context_length(&self) -> usize {
        8192
    }
    fn apply_chat_template(&self, m: &[ChatMessage], _: bool) -> kiln_core::Result<String> {
        Ok(m.iter().map(ChatMessage::text_content).collect())
    }
    fn generate_stream(
        &self,
        request: &GenerationRequest,
        _: &CancelToken,
        _: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<GenerationOutput> {
        let prompt = match &request.prompt {
            Prompt::Chat(m) => m
                .iter()
                .map(ChatMessage::text_content)
                .collect::<Vec<_>>()
                .join("\n"),
            Prompt::Text(t) => t.clone(),
            Prompt::Tokens(_) => String::new(),
        };
        self.seen.lock().unwrap().push(prompt);
        let ResponseFormat::JsonSchema { json_schema } = &request.response_format else {
            panic!("the assistant asks the model only for constrained output");
        };
        let schema = &json_schema.schema;
        let text = if let Some(labels) = schema["enum"].as_array() {
            self.pick(labels).to_string()
        } else {
            let names = schema["properties"]["name"]["enum"].as_array().unwrap();
            let ids = schema["properties"]["arguments"]["properties"]["order_id"]["enum"]
                .as_array()
                .unwrap();
            json!({"name": self.pick(names), "arguments": {"order_id": self.pick(ids)}}).to_string()
        };
        Ok(GenerationOutput {
            text,
            token_ids: vec![],
            prompt_ids: vec![],
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            timings: Timings::default(),
            logprobs: None,
        })
    }
}

/// Photo search over constant embeddings (the leak test does not judge recognition).
struct FlatEmbedder;

impl Embedder for FlatEmbedder {
    fn name(&self) -> &str {
        "flat"
    }
    fn dimension(&self) -> usize {
        2
    }
    fn supports_images(&self) -> bool {
        true
    }
    fn embed(&self, inputs: &[EmbeddingInput]) -> kiln_core::Result<Vec<Embedding>> {
        Ok(inputs.iter().map(|_| vec![1.0, 0.5]).collect())
    }
}

#[test]
fn no_case_leaks_with_misbehaving_models() {
    let dir = kiln_retail::default_data_dir();
    let data = StoreData::load(&dir).unwrap();
    let examples: Vec<LabelledText> = read_jsonl(&dir.join("train/intents.jsonl")).unwrap();
    let cases: Vec<Case> = read_jsonl(&dir.join("eval/conversations.jsonl")).unwrap();
    assert!(cases.len() >= 80, "{} cases", cases.len());
    for category in [
        "intent",
        "policy",
        "order",
        "recommend",
        "image",
        "adversarial",
    ] {
        assert!(
            cases.iter().any(|c| c.category == category),
            "no {category} case"
        );
    }
    let products = data.products.clone();
    let lookup = |sku: &str| {
        products
            .iter()
            .find(|p| p.sku == sku)
            .map(|p| (p.category.clone(), p.price, p.colors.clone()))
    };
    for seed in 1..=3 {
        let model = Arc::new(Chaos::new(seed));
        let store = Arc::new(Store::open(None, &data).unwrap());
        let photos = data
            .products
            .iter()
            .map(|_| ImageSource::Bytes { data: vec![0] })
            .collect();
        let assistant = RetailAssistant::new(
            model.clone(),
            &data,
            store.clone(),
            &examples,
            RetailConfig::default(),
        )
        .with_image_search(kiln_retail::ImageSearch::new(Arc::new(FlatEmbedder), photos).unwrap());
        let mut results = Vec::new();
        for case in &cases {
            store.reset_orders(&data).unwrap();
            let before = store.last_turn_id().unwrap();
            let seen_before = model.seen.lock().unwrap().len();
            let mut message = ChatMessage::user(case.message.clone());
            if case.image.is_some() {
                message = message.with_image(ImageSource::Bytes { data: vec![1] });
            }
            let turn = assistant.respond(Some(&case.customer), &[message]).unwrap();
            let r = score(case, &turn, &lookup);
            assert!(
                r.leaked.is_empty(),
                "seed {seed}, {}: reply leaked {:?}",
                case.id,
                r.leaked
            );
            let logged = store.logged_text(before).unwrap().join("\n").to_lowercase();
            let prompts = model.seen.lock().unwrap()[seen_before..]
                .join("\n")
                .to_lowercase();
            for f in case.expect.forbidden.iter().filter(|f| !f.is_empty()) {
                let f = f.to_lowercase();
                assert!(
                    !logged.contains(&f),
                    "seed {seed}, {}: {f:?} logged",
                    case.id
                );
                // The message's own personal data never reaches the model either.
                if case.message.to_lowercase().contains(&f) {
                    assert!(
                        !prompts.contains(&f),
                        "seed {seed}, {}: {f:?} shown to the model",
                        case.id
                    );
                }
            }
            // Whatever the model picked, an order that is not the customer's is never described.
            for call in &turn.tool_calls {
                let id = call.arguments["order_id"].as_str().unwrap();
                let owner = data
                    .orders
                    .iter()
                    .find(|o| o.id == id)
                    .map(|o| o.customer.as_str());
                if owner != Some(case.customer.as_str()) {
                    assert!(
                        kiln_retail::tools::not_found(&call.result),
                        "{}: {call:?}",
                        case.id
                    );
                    assert!(turn.refused, "{}", case.id);
                }
            }
            results.push(r);
        }
        let summary = Summary::of(&results);
        assert_eq!(summary.leaks, 0);
        // The guard does not depend on the model: what it refuses is refused whatever the
        // model does.
        for (case, r) in cases.iter().zip(&results) {
            if kiln_retail::guard::refuses(&case.message, Some(&case.customer)) {
                assert!(
                    r.refusal_ok && case.expect.refuse,
                    "seed {seed}, {}",
                    case.id
                );
            }
        }
    }
}

#[test]
fn orders_are_scoped_to_the_signed_in_customer() {
    let data = StoreData::load(kiln_retail::default_data_dir()).unwrap();
    let store = Store::open(None, &data).unwrap();
    for o in &data.orders {
        assert!(store.order(&o.customer, &o.id).unwrap().is_some());
        for c in data.customers.iter().filter(|c| c.id != o.customer) {
            assert!(
                store.order(&c.id, &o.id).unwrap().is_none(),
                "{} read {}",
                c.id,
                o.id
            );
        }
    }
}

#[test]
fn an_anonymous_caller_reads_no_order() {
    let data = StoreData::load(kiln_retail::default_data_dir()).unwrap();
    let examples: Vec<LabelledText> =
        read_jsonl(&kiln_retail::default_data_dir().join("train/intents.jsonl")).unwrap();
    let store = Arc::new(Store::open(None, &data).unwrap());
    let id = &data.orders[0].id;
    for seed in 1..=5 {
        let a = RetailAssistant::new(
            Arc::new(Chaos::new(seed)),
            &data,
            store.clone(),
            &examples,
            RetailConfig::default(),
        );
        for caller in [None, Some(kiln_retail::ANONYMOUS), Some("")] {
            let turn = a
                .respond(
                    caller,
                    &[ChatMessage::user(format!("where is order {id}?"))],
                )
                .unwrap();
            assert!(turn.tool_calls.is_empty(), "{turn:?}");
            if turn.intent.is_order() {
                assert!(turn.refused);
            }
        }
    }
}

#[test]
fn knowledge_base_finds_the_policy_articles() {
    let dir = kiln_retail::default_data_dir();
    let data = StoreData::load(&dir).unwrap();
    let kb = kiln_retail::search::KnowledgeBase::new(data.articles.clone());
    let cases: Vec<Case> = read_jsonl(&dir.join("eval/conversations.jsonl")).unwrap();
    let mut misses = Vec::new();
    let mut total = 0;
    for c in cases.iter().filter(|c| c.expect.article.is_some()) {
        total += 1;
        let hit = kb.search(&c.message, 1);
        let got = hit.first().map(|h| kb.articles()[h.article].id.clone());
        if got != c.expect.article {
            misses.push((c.id.clone(), got));
        }
    }
    eprintln!(
        "top-1 retrieval {}/{total}; misses {misses:?}",
        total - misses.len()
    );
    // BM25 over titles, tags and bodies: 33 of the 35 policy questions find their article first
    // (measured; the two misses share their words with a neighbouring article: a wrong street vs a
    // wrong item, cancelling an order vs a mistaken purchase).
    assert!(misses.len() <= 2, "{misses:?}");
}

#[test]
fn question_framing_does_not_steer_retrieval() {
    let data = StoreData::load(kiln_retail::default_data_dir()).unwrap();
    let kb = kiln_retail::search::KnowledgeBase::new(data.articles.clone());
    for (question, article) in [
        ("How long do I have to return an item?", "KB-001"),
        ("How much is express shipping?", "KB-009"),
    ] {
        let hit = &kb.search(question, 1)[0];
        assert_eq!(kb.articles()[hit.article].id, article, "{question}");
    }
}
