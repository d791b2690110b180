//! LLaVA chat generation against transformers: the tiny `chat_tiny` fixture (tools/make_llava_fixtures.py:
//! tokenizer with an `<image>` token, chat template, CLIP processor config, a PNG) gives transformers'
//! prompt ids (template, image token expanded to 16 features) and its greedy continuation.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_core::{
    ChatMessage, ContentPart, GenerationRequest, ImageSource, Role, SamplingParams, TextGenerator,
};
use kiln_llava::LlavaGenerator;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llava/chat_tiny")
}

fn ask(image: ImageSource) -> GenerationRequest {
    let msg = ChatMessage {
        role: Role::User,
        content: vec![
            ContentPart::Image { source: image },
            ContentPart::Text {
                text: "what is this".into(),
            },
        ],
        name: None,
    };
    let mut r = GenerationRequest::chat(vec![msg])
        .with_sampling(SamplingParams::greedy())
        .with_max_tokens(8);
    r.stop.ignore_eos = true;
    r
}

#[test]
fn chat_with_an_image_matches_transformers_generate() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("generation.json")).unwrap())
            .unwrap();
    let ids = |k: &str| -> Vec<u32> {
        want[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let g = LlavaGenerator::open(dir(), &Device::flex()).unwrap();
    let path = dir().join("picture.png").display().to_string();
    let out = g.generate(&ask(ImageSource::Path { path })).unwrap();
    assert_eq!(
        out.prompt_ids,
        ids("prompt_ids"),
        "prompt ids (template + image expansion)"
    );
    assert_eq!(out.token_ids, ids("generated_ids"), "greedy continuation");

    // The same image as a data URL gives the same answer.
    use base64::Engine as _;
    let png = std::fs::read(dir().join("picture.png")).unwrap();
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    let again = g.generate(&ask(ImageSource::Url { url })).unwrap();
    assert_eq!(again.token_ids, out.token_ids);
}

#[test]
fn remote_urls_and_missing_images_are_clear_errors() {
    let g = LlavaGenerator::open(dir(), &Device::flex()).unwrap();
    let e = g
        .generate(&ask(ImageSource::Url {
            url: "https://example.com/cat.png".into(),
        }))
        .unwrap_err()
        .to_string();
    assert!(e.contains("data: URLs"), "{e}");
    let e = g
        .generate(&ask(ImageSource::Path {
            path: "/no/such/picture.png".into(),
        }))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/picture.png"), "{e}");
}
