//! The OpenAPI 3 document served at `/openapi.json`, written by hand to match the shapes in
//! [`crate::openai`] and the routes.
//!
//! The document describes the running server: the `model` fields list the models that can answer
//! each operation (so a schema-valid request names a model that can serve it), and the limits are
//! the configured ones. Operations that no served model can answer are left out.

use serde_json::{Value, json};

/// What the document needs to know of a running server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiFacts {
    /// Models and routes that generate text.
    pub generation: Vec<String>,
    /// Models that embed.
    pub embedding: Vec<String>,
    /// Whether every embedding model also embeds images.
    pub embeds_images: bool,
    /// Models with a watermark (and a tokenizer to detect it).
    pub watermarked: Vec<String>,
    /// Models that load adapters at run time.
    pub adapter_models: Vec<String>,
    /// `server.max_completion_tokens`.
    pub max_completion_tokens: usize,
    /// Whether the server was started from a configuration file it can read again.
    pub reloadable: bool,
}

/// The pattern of an adapter name (see [`crate::state::AppState::adapter_dir`]).
const ADAPTER_NAME: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

fn error_responses() -> Value {
    let e = json!({"description": "An error in OpenAI's shape", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"400": e, "401": e, "403": e, "404": e, "413": e, "429": e, "503": e})
}

fn with_params(mut operation: Value, parameters: Value) -> Value {
    operation["parameters"] = parameters;
    operation
}

fn op(summary: &str, request: Option<&str>, response: &str, streams: bool) -> Value {
    let mut responses = error_responses();
    let mut content = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}});
    if streams {
        // In OpenAPI 3.0 the schema of an event stream describes one event.
        content["text/event-stream"] = json!({"schema": {"type": "object", "required": ["data"],
            "properties": {"data": {"type": "string", "description": "a chunk as JSON; the last event is `[DONE]`"},
                           "event": {"type": "string"}, "id": {"type": "string"}}}});
    }
    responses["200"] = json!({"description": "OK", "content": content});
    let mut o = json!({"summary": summary, "responses": responses, "security": [{"bearer": []}]});
    if let Some(r) = request {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}}});
    }
    o
}

/// A `model` field naming one of `names`.
fn model_enum(names: &[String], description: &str) -> Value {
    if names.is_empty() {
        return json!({"type": "string", "description": description});
    }
    json!({"type": "string", "enum": names, "description": description})
}

/// The `model` field of the generation operations: a model or route, or `model:adapter`.
fn generation_model(names: &[String]) -> Value {
    json!({"anyOf": [
        model_enum(names, "a model or a cascade route"),
        {"type": "string", "pattern": format!("^[^:]+:{}", &ADAPTER_NAME[1..]),
         "description": "`model:adapter`: a LoRA adapter of the model (404 when it is not loaded)"},
    ]})
}

/// Marks optional fields that may also be sent as `null` (the server reads them as absent).
fn nullable(properties: &mut Value, keys: &[&str]) {
    for k in keys {
        properties[*k]["nullable"] = json!(true);
    }
}

/// An object schema with `required` fields.
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn sampling_properties(max_tokens: usize) -> Value {
    let stop = json!({"type": "string", "minLength": 1});
    let mut p = json!({
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 1},
        "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "default": 1},
        "top_k": {"type": "integer", "minimum": 0, "maximum": u64::MAX, "description": "Kiln extension; 0 is off"},
        "min_p": {"type": "number", "minimum": 0, "maximum": 1, "description": "Kiln extension"},
        "repetition_penalty": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "description": "Kiln extension"},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "seed": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
        "stop": {"oneOf": [stop, {"type": "array", "items": stop, "maxItems": 4}]},
        "n": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        "stream": {"type": "boolean", "default": false},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": max_tokens},
    });
    nullable(
        &mut p,
        &[
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "repetition_penalty",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "stop",
            "n",
            "stream_options",
            "max_tokens",
        ],
    );
    p
}

fn chat_request(facts: &ApiFacts) -> Value {
    let mut p = sampling_properties(facts.max_completion_tokens);
    let function = object(
        &["name"],
        json!({"name": {"type": "string"}, "description": {"type": "string"}, "parameters": {"type": "object"}}),
    );
    let tool = object(
        &["type", "function"],
        json!({"type": {"type": "string", "enum": ["function"]}, "function": function}),
    );
    let named = object(
        &["type", "function"],
        json!({"type": {"type": "string", "enum": ["function"]},
               "function": object(&["name"], json!({"name": {"type": "string"}}))}),
    );
    let format = |kind: &str| {
        object(
            &["type"],
            json!({"type": {"type": "string", "enum": [kind]}}),
        )
    };
    let mut schema_format = object(
        &["type", "json_schema"],
        json!({"type": {"type": "string", "enum": ["json_schema"]},
               "json_schema": object(&["schema"], json!({"name": {"type": "string"}, "description": {"type": "string"},
                                                         "schema": {"type": "object"}, "strict": {"type": "boolean"}}))}),
    );
    schema_format["description"] =
        json!("output constrained to the JSON schema; a schema Kiln cannot compile is a 400");
    for (k, v) in [
        ("model", generation_model(&facts.generation)),
        (
            "messages",
            json!({"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Message"}}),
        ),
        ("max_completion_tokens", p["max_tokens"].clone()),
        ("logprobs", json!({"type": "boolean"})),
        (
            "top_logprobs",
            json!({"type": "integer", "minimum": 0, "maximum": 20}),
        ),
        ("tools", json!({"type": "array", "items": tool})),
        (
            "tool_choice",
            json!({"oneOf": [{"type": "string", "enum": ["none", "auto", "required"]}, named]}),
        ),
        (
            "response_format",
            json!({"oneOf": [format("text"), format("json_object"), schema_format]}),
        ),
    ] {
        p[k] = v;
    }
    nullable(
        &mut p,
        &[
            "max_completion_tokens",
            "top_logprobs",
            "tools",
            "tool_choice",
            "response_format",
        ],
    );
    json!({"type": "object", "required": ["model", "messages"], "properties": p})
}

fn completion_request(facts: &ApiFacts) -> Value {
    let mut p = sampling_properties(facts.max_completion_tokens);
    let token = json!({"type": "integer", "minimum": 0, "maximum": u32::MAX});
    for (k, v) in [
        ("model", generation_model(&facts.generation)),
        (
            "prompt",
            json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                             {"type": "array", "items": token, "minItems": 1, "description": "token ids of the model's vocabulary"}]}),
        ),
        (
            "logprobs",
            json!({"type": "integer", "minimum": 0, "maximum": 5}),
        ),
        ("echo", json!({"type": "boolean", "enum": [false]})),
    ] {
        p[k] = v;
    }
    p["max_tokens"]["default"] = json!(16);
    nullable(&mut p, &["logprobs"]);
    json!({"type": "object", "required": ["model", "prompt"], "properties": p})
}

fn embedding_request(facts: &ApiFacts) -> Value {
    let image = object(
        &["type", "image_url"],
        json!({"type": {"type": "string", "enum": ["image_url"]},
               "image_url": {"oneOf": [{"type": "string"}, object(&["url"], json!({"url": {"type": "string"}}))]}}),
    );
    let item = if facts.embeds_images {
        json!({"oneOf": [{"type": "string"}, image],
               "description": "a text, or (Kiln extension) an image as a data: URL or a file the server may read"})
    } else {
        json!({"type": "string"})
    };
    object(
        &["model", "input"],
        json!({"model": model_enum(&facts.embedding, "an embedding model"),
               "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": item, "minItems": 1, "maxItems": 2048}]},
               "encoding_format": {"type": "string", "enum": ["float", "base64", null], "nullable": true}}),
    )
}

fn message_schema() -> Value {
    let text = object(
        &["type", "text"],
        json!({"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}),
    );
    let image = object(
        &["type", "image_url"],
        json!({"type": {"type": "string", "enum": ["image_url"]},
               "image_url": {"oneOf": [{"type": "string"}, object(&["url"], json!({"url": {"type": "string"}}))]}}),
    );
    let call = object(
        &["function"],
        json!({"id": {"type": "string"}, "type": {"type": "string", "enum": ["function"]},
               "function": object(&["name"], json!({"name": {"type": "string"},
                   "arguments": {"oneOf": [{"type": "string"}, {"type": "object"}], "description": "JSON text (or, Kiln extension, an object)"}}))}),
    );
    object(
        &["role"],
        json!({
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [text, image]}}], "nullable": true,
                        "description": "image parts are answered only by models that take images"},
            "name": {"type": "string", "nullable": true}, "tool_calls": {"type": "array", "items": call, "nullable": true},
            "tool_call_id": {"type": "string", "nullable": true}}),
    )
}

/// The document for a server with these models and limits.
#[must_use]
pub fn document(facts: &ApiFacts) -> Value {
    let usage = json!({"type": "object", "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}});
    let finish =
        json!({"type": "string", "enum": ["stop", "length", "tool_calls", "content_filter"]});
    let mut paths = json!({
        "/v1/models": {"get": op("Models and routes the key may use", None, "ModelList", false)},
        "/v1/models/{id}": {"get": with_params(op("One model", None, "Model", false),
            json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]))},
        "/v1/usage": {"get": op("Token and cost usage (own key; every key for admins)", None, "UsageReport", false)},
        "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "OK"}}}},
        "/ready": {"get": {"summary": "Readiness with queue depth and active sequences", "responses": {"200": {"description": "ready"}, "503": {"description": "shutting down"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
    });
    if !facts.generation.is_empty() {
        paths["/v1/chat/completions"] = json!({"post": op("Chat completion (SSE when stream is true)", Some("ChatRequest"), "ChatCompletion", true)});
        paths["/v1/completions"] = json!({"post": op("Text completion (SSE when stream is true)", Some("CompletionRequest"), "Completion", true)});
    }
    if !facts.embedding.is_empty() {
        paths["/v1/embeddings"] =
            json!({"post": op("Embeddings", Some("EmbeddingRequest"), "EmbeddingList", false)});
    }
    if !facts.watermarked.is_empty() {
        paths["/v1/watermark/detect"] = json!({"post": op("Watermark z-score of a text", Some("DetectRequest"), "Detection", false)});
    }
    if !facts.adapter_models.is_empty() {
        let model = model_enum(
            &facts.adapter_models,
            "a model that loads adapters at run time",
        );
        paths["/v1/admin/adapters"] = json!({"get": with_params(op("Loaded adapters (admin)", None, "Adapters", false),
            json!([{"name": "model", "in": "query", "required": true, "schema": model}]))});
        paths["/v1/admin/adapters/load"] = json!({"post": op("Load an adapter from adapters_dir (admin)", Some("AdapterRequest"), "Adapters", false)});
        paths["/v1/admin/adapters/unload"] = json!({"post": op("Unload an adapter (admin)", Some("AdapterRequest"), "Adapters", false)});
    }
    if facts.reloadable {
        paths["/v1/admin/reload"] = json!({"post": op(
            "Read the configuration file again and apply it (admin; as SIGHUP). A rejected one is a 400 and the running one is kept",
            None, "Reloaded", false)});
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Kiln serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OpenAI-compatible API with Kiln's gateway (keys, roles, limits, PII masking, filters, cascades, cost)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": "string", "nullable": true}, "code": {"type": "string", "nullable": true}}}}},
                "Message": message_schema(),
                "ChatRequest": chat_request(facts),
                "CompletionRequest": completion_request(facts),
                "EmbeddingRequest": embedding_request(facts),
                "Usage": usage,
                "ChatCompletion": {"type": "object", "properties": {
                    "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]}, "created": {"type": "integer"},
                    "model": {"type": "string", "description": "the model that answered (for cascades, the one that was kept)"},
                    "choices": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"},
                        "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string", "nullable": true}, "tool_calls": {"type": "array", "items": {"type": "object"}}}},
                        "logprobs": {"type": "object", "nullable": true}, "finish_reason": finish}}},
                    "usage": {"$ref": "#/components/schemas/Usage"}}},
                "Completion": {"type": "object", "properties": {
                    "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]}, "created": {"type": "integer"}, "model": {"type": "string"},
                    "choices": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "text": {"type": "string"}, "logprobs": {"type": "object", "nullable": true}, "finish_reason": finish}}},
                    "usage": {"$ref": "#/components/schemas/Usage"}}},
                "EmbeddingList": {"type": "object", "properties": {"object": {"type": "string"}, "model": {"type": "string"},
                    "data": {"type": "array", "items": {"type": "object", "properties": {"object": {"type": "string"}, "index": {"type": "integer"},
                        "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string", "description": "base64 of little-endian f32"}]}}}},
                    "usage": {"type": "object"}}},
                "Model": {"type": "object", "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"}, "owned_by": {"type": "string"},
                    "kind": {"type": "string", "enum": ["generation", "embedding", "cascade"]}}},
                "ModelList": {"type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
                "UsageReport": {"type": "object", "properties": {"object": {"type": "string", "enum": ["usage"]}, "keys": {"type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "budget": {"type": "number", "nullable": true}, "cost": {"type": "number"},
                    "models": {"type": "object", "additionalProperties": {"type": "object", "properties": {"requests": {"type": "integer"}, "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "cost": {"type": "number"}}}}}}}}},
                "DetectRequest": object(&["model", "text"], json!({"model": model_enum(&facts.watermarked, "a watermarked model"), "text": {"type": "string"}})),
                "Detection": {"type": "object", "properties": {"model": {"type": "string"}, "z_score": {"type": "number"}, "watermarked": {"type": "boolean"},
                    "scored_tokens": {"type": "integer"}, "green_tokens": {"type": "integer"}, "gamma": {"type": "number"}, "z_threshold": {"type": "number"}}},
                "AdapterRequest": object(&["model", "name"], json!({"model": model_enum(&facts.adapter_models, "a model that loads adapters at run time"), "name": {"type": "string", "pattern": ADAPTER_NAME}})),
                "Reloaded": {"type": "object", "properties": {"reloaded": {"type": "boolean"},
                    "changed": {"type": "array", "items": {"type": "string", "enum": ["routes", "roles", "keys", "pii", "filters"]}}}},
                "Adapters": {"type": "object", "properties": {"model": {"type": "string"}, "adapters": {"type": "array", "items": {"type": "string"}}}},
            }
        }
    })
}
