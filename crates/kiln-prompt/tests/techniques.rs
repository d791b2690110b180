//! Zero-shot, few-shot, chain-of-thought and self-consistency with a scripted model.

mod common;

use common::{Keywords, Scripted};
use kiln_core::{Prompt, SamplingParams};
use kiln_prompt::Error;
use kiln_prompt::techniques::{
    AnswerFormat, ChainOfThought, Example, FewShot, GenerateOptions, SelfConsistency, zero_shot,
};

#[test]
fn zero_shot_sends_instruction_and_input_as_a_chat_message() {
    let model = Scripted::new(["  refund \n"]);
    let opts = GenerateOptions::new()
        .system("You classify intents.")
        .max_tokens(8);
    let out = zero_shot(
        &model,
        "Classify the intent.",
        "I want my money back",
        &opts,
    )
    .expect("run");
    assert_eq!(out.text, "refund");
    assert_eq!(out.prompt, "Classify the intent.\n\nI want my money back");
    let req = &model.requests.lock().expect("lock")[0];
    let Prompt::Chat(messages) = &req.prompt else {
        panic!("chat expected")
    };
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].text_content(), "You classify intents.");
    assert_eq!(req.max_tokens, 8);
    assert!(req.sampling.is_greedy());
    assert_eq!(out.usage.completion_tokens, 1);
}

#[test]
fn few_shot_with_fixed_examples_stops_at_the_next_input() {
    // The model rambles on with an invented example; the stop string cuts it.
    let model = Scripted::new([" pain\n\nEnglish: cat\nFrench: chat"]);
    let fs = FewShot::new(
        "Translate English to French.",
        vec![
            Example::new("cheese", "fromage"),
            Example::new("sea otter", "loutre de mer"),
        ],
    )
    .prefixes("English:", "French:");
    let out = fs
        .run(&model, "bread", &GenerateOptions::new().text_mode())
        .expect("run");
    assert_eq!(out.text, "pain");
    assert_eq!(
        model.prompts()[0],
        "Translate English to French.\n\nEnglish: cheese\nFrench: fromage\n\n\
         English: sea otter\nFrench: loutre de mer\n\nEnglish: bread\nFrench:"
    );
    let req = &model.requests.lock().expect("lock")[0];
    assert!(matches!(req.prompt, Prompt::Text(_)));
    assert_eq!(req.stop.stop_strings, ["\nEnglish:"]);
}

#[test]
fn few_shot_picks_the_most_similar_examples() {
    let embedder = Keywords(vec!["refund", "parcel", "password"]);
    let fs = FewShot::new(
        "Classify the intent.",
        vec![
            Example::new("I need a refund", "refund"),
            Example::new("Where is my parcel?", "shipping"),
            Example::new("Reset my password", "account"),
            Example::new("The parcel arrived broken, refund please", "refund"),
        ],
    )
    .index(&embedder)
    .expect("index");
    let picked = fs
        .select(&embedder, "my parcel is late", 2)
        .expect("select");
    assert_eq!(picked[0].input, "Where is my parcel?");
    assert_eq!(picked[1].input, "The parcel arrived broken, refund please");

    let model = Scripted::new(["shipping"]);
    let out = fs
        .run_similar(
            &model,
            &embedder,
            "my parcel is late",
            1,
            &GenerateOptions::new(),
        )
        .expect("run");
    assert_eq!(out.text, "shipping");
    assert_eq!(
        model.prompts()[0],
        "Classify the intent.\n\nInput: Where is my parcel?\nOutput: shipping\n\nInput: my parcel is late\nOutput:"
    );

    let unindexed = FewShot::new("", vec![Example::new("a", "b")]);
    assert!(matches!(
        unindexed.select(&embedder, "a", 1),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn chain_of_thought_extracts_the_answer() {
    let model = Scripted::new([
        "There are 35 heads, so c + r = 35. Legs: 2c + 4r = 94, so 2r = 24 and r = 12, c = 23.\n\
         The answer is 23 chickens and 12 rabbits.",
        "c = 23 and r = 12, so there are 12 rabbits",
    ]);
    let q = "A farm has 35 heads and 94 legs of chickens and rabbits. How many of each?";
    let cot = ChainOfThought::new();
    let out = cot.run(&model, q, &GenerateOptions::new()).expect("run");
    assert_eq!(out.answer.as_deref(), Some("23 chickens and 12 rabbits"));
    assert!(model.prompts()[0].starts_with(q));
    assert!(model.prompts()[0].contains("Let's think step by step"));

    let numbers = ChainOfThought::new()
        .format(AnswerFormat::LastNumber)
        .instruction("Think, then answer.");
    let out = numbers
        .run(&model, q, &GenerateOptions::new())
        .expect("run");
    assert_eq!(out.answer.as_deref(), Some("12"));
    assert_eq!(model.prompts()[1], format!("{q}\n\nThink, then answer."));
}

#[test]
fn self_consistency_votes_over_seeded_chains() {
    let model = Scripted::new([
        "7 * 6 = 42. The answer is 42.",
        "7 * 6 = 36. The answer is 36.",
        "six sevens are forty-two: The answer is 42.0",
        "I don't know.",
        "Answer: 42",
    ]);
    let opts = GenerateOptions::new().sampling(SamplingParams {
        temperature: 0.7,
        ..SamplingParams::default()
    });
    let vote = SelfConsistency::new(5)
        .base_seed(100)
        .run(&model, "What is 7 times 6?", &opts)
        .expect("run");
    assert_eq!(vote.answer.as_deref(), Some("42"));
    assert_eq!(vote.counts, [("42".to_string(), 3), ("36".to_string(), 1)]);
    assert_eq!(vote.chains.len(), 5);
    assert_eq!(vote.chains[3].answer, None);
    let seeds: Vec<_> = model
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.sampling.seed)
        .collect();
    assert_eq!(
        seeds,
        [Some(100), Some(101), Some(102), Some(103), Some(104)]
    );
    assert!(vote.usage.completion_tokens > 0);

    let greedy = SelfConsistency::new(3).run(&model, "q", &GenerateOptions::new());
    assert!(matches!(
        greedy,
        Err(Error::InvalidParameter {
            name: "temperature",
            ..
        })
    ));
    assert!(matches!(
        SelfConsistency::new(0).run(&model, "q", &opts),
        Err(Error::InvalidParameter { .. })
    ));
    assert_eq!(model.calls(), 5, "invalid parameters generate nothing");
}
