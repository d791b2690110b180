//! The assistant's flow, as the case study's diagram draws it: input type (text or photo) ->
//! guard -> intent -> consult (knowledge base with citations) | order (a ReAct step: the model
//! writes the tool call, the tool bound to the signed-in customer runs, its observation becomes the
//! reply) | recommend (catalogue filters, or CLIP photo matching) -> reply -> log (PII-masked).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use kiln_core::{
    ChatMessage, ContentPart, Embedder, Embedding, EmbeddingInput, GenerationRequest, ImageSource,
    Prompt, ResponseFormat, Role, SamplingParams, TextGenerator, Usage, cosine_similarity,
};
use kiln_serve::pii::{Masker, PiiKind};
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{Catalog, ProductQuery, category_captions};
use crate::data::{CATEGORIES, StoreData};
use crate::guard;
use crate::intent::{ExampleIndex, Intent, IntentClassifier, IntentMode, LabelledText};
use crate::reply;
use crate::search::KnowledgeBase;
use crate::store::{Store, TurnLog};
use crate::tools::{BoundTool, OrderTool, order_ids_in};
use crate::{Result, RetailError};
use kiln_prompt::techniques::{Example, FewShot};

/// The caller name a server gives requests when authentication is off.
pub const ANONYMOUS: &str = "anonymous";

/// Settings of the assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct RetailConfig {
    /// The store's name, used in replies.
    pub store_name: String,
    /// The date returns are judged on (the store data's snapshot date by default).
    pub today: NaiveDate,
    /// The return window in days (the knowledge base's returns policy).
    pub return_window_days: i64,
    /// How intents are recognised.
    pub intent_mode: IntentMode,
    /// Few-shot examples in the intent prompt (the most similar to the message).
    pub intent_shots: usize,
    /// Products per recommendation.
    pub recommendations: usize,
}

impl Default for RetailConfig {
    fn default() -> Self {
        Self {
            store_name: "Kiln Outfitters".into(),
            today: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap_or_default(),
            return_window_days: 30,
            intent_mode: IntentMode::FewShot,
            intent_shots: 10,
            recommendations: 3,
        }
    }
}

/// A tool call made during a turn, with its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallRecord {
    /// The tool's name.
    pub name: String,
    /// The arguments the model wrote.
    pub arguments: Value,
    /// The tool's result.
    pub result: Value,
}

/// Everything one turn produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// The routed intent.
    pub intent: Intent,
    /// The reply shown to the customer.
    pub reply: String,
    /// Tool calls (at most one per turn).
    pub tool_calls: Vec<ToolCallRecord>,
    /// Knowledge-base articles cited.
    pub citations: Vec<String>,
    /// Products recommended (skus).
    pub products: Vec<String>,
    /// The category a photo was recognised as.
    pub photo_category: Option<String>,
    /// Whether the assistant declined (a guard refusal, an order not on the account, no sign-in).
    pub refused: bool,
    /// Tokens the language model read and wrote.
    pub usage: Usage,
    /// Wall time of the turn.
    #[serde(serialize_with = "as_millis")]
    pub latency: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// Photo search: CLIP embeddings of the products' photos and of the category captions.
pub struct ImageSearch {
    embedder: Arc<dyn Embedder>,
    products: Vec<Embedding>,
    captions: Vec<Embedding>,
}

impl std::fmt::Debug for ImageSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSearch")
            .field("embedder", &self.embedder.name())
            .field("products", &self.products.len())
            .finish()
    }
}

impl ImageSearch {
    /// Embeds every product photo (in catalogue order) and the category captions.
    ///
    /// # Errors
    /// An embedder without images, a photo count that differs from the catalogue, or the
    /// embedder's error.
    pub fn new(embedder: Arc<dyn Embedder>, product_photos: Vec<ImageSource>) -> Result<Self> {
        if !embedder.supports_images() {
            return Err(RetailError::Invalid(format!(
                "the embedder {} does not embed images",
                embedder.name()
            )));
        }
        let inputs: Vec<EmbeddingInput> = product_photos
            .into_iter()
            .map(EmbeddingInput::Image)
            .collect();
        let products = embedder.embed(&inputs)?;
        let captions: Vec<EmbeddingInput> = category_captions()
            .into_iter()
            .map(EmbeddingInput::Text)
            .collect();
        let captions = embedder.embed(&captions)?;
        Ok(Self {
            embedder,
            products,
            captions,
        })
    }
}

/// The retail customer-service assistant.
pub struct RetailAssistant {
    generator: Arc<dyn TextGenerator>,
    store: Arc<Store>,
    kb: KnowledgeBase,
    catalog: Catalog,
    intents: IntentClassifier,
    /// Worked tool calls (from the labelled order messages) for the base model's Action step.
    tool_examples: ExampleIndex,
    images: Option<ImageSearch>,
    config: RetailConfig,
    metrics: OnceLock<Arc<kiln_serve::metrics::Metrics>>,
}

impl std::fmt::Debug for RetailAssistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetailAssistant")
            .field("generator", &self.generator.model_name())
            .field("products", &self.catalog.products().len())
            .field("articles", &self.kb.articles().len())
            .field("images", &self.images)
            .field("config", &self.config)
            .finish()
    }
}

impl RetailAssistant {
    /// An assistant over `generator` with the store's `data`, its database `store` and the
    /// labelled `examples` its few-shot intent prompt draws on.
    #[must_use]
    pub fn new(
        generator: Arc<dyn TextGenerator>,
        data: &StoreData,
        store: Arc<Store>,
        examples: &[LabelledText],
        config: RetailConfig,
    ) -> Self {
        Self {
            generator,
            store,
            kb: KnowledgeBase::new(data.articles.clone()),
            catalog: Catalog::new(data.products.clone()),
            intents: IntentClassifier::new(
                examples,
                config.intent_shots,
                config.intent_mode.clone(),
            ),
            tool_examples: ExampleIndex::new(tool_examples(examples)),
            images: None,
            config,
            metrics: OnceLock::new(),
        }
    }

    /// Counts turns in the server's Prometheus metrics from now on
    /// (`kiln_app_events_total{event="retail_turn",intent,outcome}`); a second call is ignored.
    pub fn attach_metrics(&self, metrics: Arc<kiln_serve::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Adds photo search.
    #[must_use]
    pub fn with_image_search(mut self, images: ImageSearch) -> Self {
        self.images = Some(images);
        self
    }

    /// The store database.
    #[must_use]
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &RetailConfig {
        &self.config
    }

    /// The language model.
    #[must_use]
    pub fn generator(&self) -> &Arc<dyn TextGenerator> {
        &self.generator
    }

    /// Answers the last user message of `messages` for `caller` (the signed-in customer's id;
    /// `None` or [`ANONYMOUS`]: nobody is signed in, so no order is readable).
    ///
    /// # Errors
    /// No user message, a photo without photo search, or a model failure.
    pub fn respond(&self, caller: Option<&str>, messages: &[ChatMessage]) -> Result<Turn> {
        let start = Instant::now();
        let last = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .ok_or_else(|| RetailError::Invalid("the conversation has no user message".into()))?;
        let image = last.content.iter().find_map(|p| match p {
            ContentPart::Image { source } => Some(source.clone()),
            ContentPart::Text { .. } => None,
        });
        // Personal data never reaches the model, the tools or the logs.
        let text = Masker::new(PiiKind::ALL.to_vec()).mask(&last.text_content());
        let customer = caller.filter(|c| !c.is_empty() && *c != ANONYMOUS);
        let mut turn = Turn {
            intent: Intent::Other,
            reply: String::new(),
            tool_calls: Vec::new(),
            citations: Vec::new(),
            products: Vec::new(),
            photo_category: None,
            refused: false,
            usage: Usage::default(),
            latency: Duration::ZERO,
        };
        if guard::refuses(&text, customer) {
            turn.refused = true;
            turn.reply = reply::refusal();
        } else if let Some(image) = image {
            turn.intent = Intent::ImageSearch;
            self.photo_search(&image, &mut turn)?;
        } else {
            let (intent, usage) = self.intents.classify(self.generator.as_ref(), &text)?;
            turn.usage += usage;
            turn.intent = intent;
            match intent {
                Intent::PolicyQuestion => self.consult(&text, &mut turn),
                i if i.is_order() => self.order(customer, &text, &mut turn)?,
                Intent::ProductSearch => self.recommend(&text, &mut turn),
                Intent::Greeting => {
                    let name = match customer {
                        Some(c) => self.store.customer_name(c)?,
                        None => None,
                    };
                    turn.reply = reply::greeting(&self.config.store_name, name.as_deref());
                }
                _ => turn.reply = reply::out_of_scope(&self.config.store_name),
            }
        }
        turn.latency = start.elapsed();
        self.log(customer.unwrap_or(ANONYMOUS), &text, &turn)?;
        Ok(turn)
    }

    fn log(&self, customer: &str, masked_message: &str, turn: &Turn) -> Result<()> {
        let mut masker = Masker::new(PiiKind::ALL.to_vec());
        let tools = serde_json::to_string(&turn.tool_calls).unwrap_or_default();
        self.store.record_turn(&TurnLog {
            customer: customer.to_owned(),
            intent: turn.intent.as_str().to_owned(),
            message: masked_message.to_owned(),
            reply: masker.mask(&turn.reply),
            tools: masker.mask(&tools),
            latency_ms: turn.latency.as_secs_f64() * 1e3,
        })?;
        if let Some(m) = self.metrics.get() {
            let outcome = if turn.refused { "declined" } else { "answered" };
            m.inc(
                "kiln_app_events_total",
                vec![
                    ("event", "retail_turn".to_owned()),
                    ("intent", turn.intent.as_str().to_owned()),
                    ("outcome", outcome.to_owned()),
                ],
            );
        }
        tracing::info!(
            customer,
            intent = turn.intent.as_str(),
            tools = turn.tool_calls.len(),
            citations = ?turn.citations,
            products = ?turn.products,
            refused = turn.refused,
            latency_ms = turn.latency.as_secs_f64() * 1e3,
            "retail turn"
        );
        Ok(())
    }

    fn consult(&self, text: &str, turn: &mut Turn) {
        match self.kb.search(text, 1).first() {
            Some(hit) => {
                let article = &self.kb.articles()[hit.article];
                turn.citations.push(article.id.clone());
                turn.reply = reply::article(article, hit.paragraph);
            }
            None => turn.reply = reply::no_article(),
        }
    }

    /// The ReAct step: Thought (from the routed intent), Action (the model writes the call under
    /// a schema that allows only the tools and the order numbers in the message), Observation
    /// (the bound tool's result), then the reply from the observation.
    fn order(&self, customer: Option<&str>, text: &str, turn: &mut Turn) -> Result<()> {
        let Some(customer) = customer else {
            turn.refused = true;
            turn.reply = reply::sign_in();
            return Ok(());
        };
        let ids = order_ids_in(text);
        if ids.is_empty() {
            // No order named: a question about how orders, tracking or returns work. Answer it
            // from the knowledge base, then offer the customer's orders to act on.
            let orders = self.store.orders_of(customer)?;
            self.consult(text, turn);
            if turn.citations.is_empty() {
                turn.reply = reply::which_order(&orders);
            } else {
                turn.reply = format!("{}\n\n{}", turn.reply, reply::which_order(&orders));
            }
            return Ok(());
        }
        // Few-shot for the base model (worked calls of similar messages as earlier turns); the
        // adapter was trained zero-shot.
        let request = match &self.config.intent_mode {
            IntentMode::FewShot => {
                let shown = self.tool_examples.select(text, TOOL_SHOTS);
                tool_call_request(text, turn.intent, &ids, &shown)
            }
            IntentMode::Adapter(name) => {
                tool_call_request(text, turn.intent, &ids, &[]).with_adapter(name.clone(), 1.0)
            }
        };
        let out = self.generator.generate(&request)?;
        turn.usage += out.usage;
        let call: Value = serde_json::from_str(out.text.trim()).unwrap_or(Value::Null);
        let tool = call
            .get("name")
            .and_then(Value::as_str)
            .and_then(OrderTool::from_name)
            .unwrap_or(OrderTool::for_intent(turn.intent));
        let arguments = match call.get("arguments") {
            Some(a) if a.get("order_id").is_some() => a.clone(),
            _ => json!({"order_id": ids[0]}),
        };
        let bound = BoundTool::new(
            tool,
            self.store.clone(),
            customer,
            self.config.today,
            self.config.return_window_days,
        );
        let result = bound.run(&arguments)?;
        let policy = self.kb.search("return refund window days", 1);
        let policy = policy.first().map(|h| &self.kb.articles()[h.article]);
        let (text, refused) = reply::order(tool, &result, &self.catalog, policy);
        if let Some(p) = policy.filter(|_| tool == OrderTool::StartReturn && !refused) {
            turn.citations.push(p.id.clone());
        }
        turn.reply = text;
        turn.refused = refused;
        turn.tool_calls.push(ToolCallRecord {
            name: tool.name().to_owned(),
            arguments,
            result,
        });
        Ok(())
    }

    fn recommend(&self, text: &str, turn: &mut Turn) {
        let query = ProductQuery::parse(text);
        let hits = self.catalog.recommend(&query, self.config.recommendations);
        let products = self.catalog.products();
        turn.products = hits
            .iter()
            .map(|h| products[h.product].sku.clone())
            .collect();
        let sold_out = self.catalog.out_of_stock(&query);
        turn.reply = reply::recommendations(products, &hits, &sold_out, &query);
    }

    fn photo_search(&self, image: &ImageSource, turn: &mut Turn) -> Result<()> {
        let Some(images) = &self.images else {
            return Err(RetailError::Invalid(
                "photo search is not configured (start the assistant with a CLIP model)".into(),
            ));
        };
        let embedding = images
            .embedder
            .embed(&[EmbeddingInput::Image(image.clone())])?
            .pop()
            .ok_or_else(|| RetailError::Invalid("the embedder returned nothing".into()))?;
        let category = images
            .captions
            .iter()
            .map(|c| cosine_similarity(&embedding, c))
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0, |(i, _)| i);
        let products = self.catalog.products();
        let mut ranked: Vec<(usize, f32)> = products
            .iter()
            .enumerate()
            .filter(|(_, p)| p.stock > 0 && p.category == CATEGORIES[category])
            .map(|(i, _)| (i, cosine_similarity(&embedding, &images.products[i])))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(self.config.recommendations);
        turn.photo_category = Some(CATEGORIES[category].to_owned());
        turn.products = ranked
            .iter()
            .map(|(i, _)| products[*i].sku.clone())
            .collect();
        turn.reply = reply::photo(CATEGORIES[category], products, &ranked);
        Ok(())
    }
}

/// Worked tool calls shown to the base model in the Action step.
const TOOL_SHOTS: usize = 4;

/// The worked tool calls of labelled order messages that name an order: (message, call, tool).
#[must_use]
pub fn tool_examples(examples: &[LabelledText]) -> Vec<(String, String, String)> {
    examples
        .iter()
        .filter_map(|e| {
            let intent = Intent::from_label(&e.intent).filter(|i| i.is_order())?;
            let id = order_ids_in(&e.text).into_iter().next()?;
            let tool = OrderTool::for_intent(intent);
            Some((e.text.clone(), tool.call_json(&id), tool.name().to_owned()))
        })
        .collect()
}

/// The Action request of the ReAct step for `text` (routed to `intent`, naming `ids`), with
/// worked calls of similar messages as earlier turns.
#[must_use]
pub fn tool_call_request(
    text: &str,
    intent: Intent,
    ids: &[String],
    examples: &[&Example],
) -> GenerationRequest {
    let tools: Vec<String> = OrderTool::ALL
        .iter()
        .map(|t| format!("- {}: {}", t.name(), t.description()))
        .collect();
    let goal = match intent {
        Intent::TrackShipment => "wants to know where the parcel is, so I will call track_shipment",
        Intent::ReturnRequest => "wants to return the order, so I will call start_return",
        _ => "asks about the status of an order, so I will call lookup_order",
    };
    // The Thought comes from the routed intent; the model writes the Action, opening its turn
    // in the chat form it was tuned on.
    let system = format!(
        "You are a clothing store's assistant. You can call these tools:\n{}\n\n\
         Thought: The customer {goal}.\nWrite the tool call as JSON: {{\"name\": ..., \"arguments\": {{\"order_id\": ...}}}}.",
        tools.join("\n"),
    );
    let query = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let prompt = Prompt::Chat(FewShot::new(system, Vec::new()).messages(&query, examples));
    let names: Vec<&str> = OrderTool::ALL.iter().map(|t| t.name()).collect();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": names},
            "arguments": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "enum": ids}},
                "required": ["order_id"],
                "additionalProperties": false,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": false,
    });
    GenerationRequest::new(prompt)
        .with_sampling(SamplingParams::greedy())
        .with_max_tokens(48)
        .with_response_format(ResponseFormat::json_schema(schema))
}
