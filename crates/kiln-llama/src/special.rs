//! Special tokens and the chat template a checkpoint ships.

/// What a checkpoint says about its special tokens and chat format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// Ids that end generation.
    pub eos_token_ids: Vec<u32>,
    /// The BOS token's text (templates use `bos_token`).
    pub bos_token: Option<String>,
    /// The EOS token's text (templates use `eos_token`).
    pub eos_token: Option<String>,
    /// The Jinja chat template, if any.
    pub chat_template: Option<String>,
}
