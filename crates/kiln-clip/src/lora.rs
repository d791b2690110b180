//! LoRA on CLIP through kiln-lora: PEFT adapters (`adapter_config.json` +
//! `adapter_model.safetensors`, module names as PEFT gives them on a `CLIPModel`) applied on the fly
//! during training ([`LoraHook`] over kiln-lora's tracked `StepFactors`) or merged into the weights
//! for inference ([`crate::ClipModel::merge_lora`]).

use burn::tensor::Tensor;
use kiln_lora::train::StepFactors;

use crate::model::LinearHook;

/// Routes a tower's linear maps to LoRA factors by PEFT module name.
#[derive(Debug)]
pub struct LoraHook<'a>(pub &'a StepFactors);

impl LinearHook for LoraHook<'_> {
    fn adapt(&self, key: &str, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        self.0.apply(key, x, y)
    }
}
