//! Few-shot prompting: English to French translation from four fixed examples.
//!
//! `cargo run --release --features prompt --example few_shot_translation -- [MODEL]`
//! (MODEL defaults to the SmolLM2-135M-Instruct GGUF fetched by `scripts/fetch-assets.sh`).

use anyhow::{Context, Result};
use kiln::prompt::techniques::{Example, FewShot, GenerateOptions};

fn main() -> Result<()> {
    let path = match std::env::args().nth(1) {
        Some(p) => p.into(),
        None => kiln::llama::assets::asset(kiln::llama::assets::SMOLLM2_GGUF)?,
    };
    let model = kiln::llama::LlamaGenerator::load(&path, &kiln::llama::LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    let translate = FewShot::new(
        "Translate English to French.",
        vec![
            Example::new("sea otter", "loutre de mer"),
            Example::new("cheese", "fromage"),
            Example::new("Good morning!", "Bonjour !"),
            Example::new("Where is the train station?", "Où est la gare ?"),
        ],
    )
    .prefixes("English:", "French:");
    // Raw-text mode: the model continues the pattern; the next "English:" line stops it.
    let options = GenerateOptions::new().text_mode().max_tokens(24);
    for sentence in [
        "peppermint",
        "Thank you very much.",
        "I would like a coffee, please.",
        "The cat is sleeping.",
    ] {
        let out = translate.run(&model, sentence, &options)?;
        println!("{sentence:<32} -> {}", out.text);
    }
    println!(
        "\nThe prompt of the last query:\n{}",
        translate.prompt(
            "The cat is sleeping.",
            &translate.examples().iter().collect::<Vec<_>>()
        )
    );
    Ok(())
}
