//! The OpenAPI 3 document served at `/openapi.json`, written by hand to match the shapes in
//! [`crate::openai`] and the routes.

use serde_json::{Value, json};

fn error_responses() -> Value {
    let e = json!({"description": "An error in OpenAI's shape", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"400": e, "401": e, "403": e, "404": e, "413": e, "429": e, "503": e})
}

fn op(summary: &str, request: Option<&str>, response: &str, streams: bool) -> Value {
    let mut responses = error_responses();
    let mut content = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}});
    if streams {
        content["text/event-stream"] = json!({"schema": {"type": "string",
            "description": "`data: <chunk JSON>` events, then `data: [DONE]`"}});
    }
    responses["200"] = json!({"description": "OK", "content": content});
    let mut o = json!({"summary": summary, "responses": responses, "security": [{"bearer": []}]});
    if let Some(r) = request {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}}});
    }
    o
}

/// The document.
#[must_use]
pub fn document() -> Value {
    let sampling = json!({
        "temperature": {"type": "number", "minimum": 0, "default": 1},
        "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "default": 1},
        "top_k": {"type": "integer", "minimum": 0, "description": "Kiln extension"},
        "min_p": {"type": "number", "description": "Kiln extension"},
        "repetition_penalty": {"type": "number", "description": "Kiln extension"},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "seed": {"type": "integer"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "n": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        "stream": {"type": "boolean", "default": false},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    });
    let mut chat_props = sampling.clone();
    for (k, v) in [
        (
            "model",
            json!({"type": "string", "description": "a model, `model:adapter`, or a cascade route"}),
        ),
        (
            "messages",
            json!({"type": "array", "items": {"$ref": "#/components/schemas/Message"}}),
        ),
        ("max_tokens", json!({"type": "integer", "minimum": 1})),
        (
            "max_completion_tokens",
            json!({"type": "integer", "minimum": 1}),
        ),
        ("logprobs", json!({"type": "boolean"})),
        (
            "top_logprobs",
            json!({"type": "integer", "minimum": 0, "maximum": 20}),
        ),
        (
            "tools",
            json!({"type": "array", "items": {"type": "object"}}),
        ),
        (
            "tool_choice",
            json!({"oneOf": [{"type": "string", "enum": ["none", "auto", "required"]}, {"type": "object"}]}),
        ),
        (
            "response_format",
            json!({"type": "object", "properties": {
            "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
            "json_schema": {"type": "object", "properties": {"name": {"type": "string"}, "schema": {"type": "object"}, "strict": {"type": "boolean"}}}}}),
        ),
    ] {
        chat_props[k] = v;
    }
    let mut completion_props = sampling;
    for (k, v) in [
        ("model", json!({"type": "string"})),
        (
            "prompt",
            json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 1}, {"type": "array", "items": {"type": "integer"}}]}),
        ),
        (
            "max_tokens",
            json!({"type": "integer", "minimum": 1, "default": 16}),
        ),
        (
            "logprobs",
            json!({"type": "integer", "minimum": 0, "maximum": 5}),
        ),
        ("echo", json!({"type": "boolean", "enum": [false]})),
    ] {
        completion_props[k] = v;
    }
    let usage = json!({"type": "object", "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}});
    let finish =
        json!({"type": "string", "enum": ["stop", "length", "tool_calls", "content_filter"]});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Kiln serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OpenAI-compatible API with Kiln's gateway (keys, roles, limits, PII masking, filters, cascades, cost)."},
        "paths": {
            "/v1/chat/completions": {"post": op("Chat completion (SSE when stream is true)", Some("ChatRequest"), "ChatCompletion", true)},
            "/v1/completions": {"post": op("Text completion (SSE when stream is true)", Some("CompletionRequest"), "Completion", true)},
            "/v1/embeddings": {"post": op("Embeddings", Some("EmbeddingRequest"), "EmbeddingList", false)},
            "/v1/models": {"get": op("Models and routes the key may use", None, "ModelList", false)},
            "/v1/models/{id}": {"get": {"summary": "One model", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                                        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}}}},
            "/v1/usage": {"get": op("Token and cost usage (own key; every key for admins)", None, "UsageReport", false)},
            "/v1/watermark/detect": {"post": op("Watermark z-score of a text", Some("DetectRequest"), "Detection", false)},
            "/v1/admin/adapters": {"get": {"summary": "Loaded adapters (admin)", "parameters": [{"name": "model", "in": "query", "required": true, "schema": {"type": "string"}}],
                                           "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Adapters"}}}}}}},
            "/v1/admin/adapters/load": {"post": op("Load an adapter from adapters_dir (admin)", Some("AdapterRequest"), "Adapters", false)},
            "/v1/admin/adapters/unload": {"post": op("Unload an adapter (admin)", Some("AdapterRequest"), "Adapters", false)},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "OK"}}}},
            "/ready": {"get": {"summary": "Readiness with queue depth and active sequences", "responses": {"200": {"description": "ready"}, "503": {"description": "shutting down"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": "string", "nullable": true}, "code": {"type": "string", "nullable": true}}}}},
                "Message": {"type": "object", "required": ["role"], "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}], "nullable": true},
                    "name": {"type": "string"}, "tool_calls": {"type": "array", "items": {"type": "object"}}, "tool_call_id": {"type": "string"}}},
                "ChatRequest": {"type": "object", "required": ["model", "messages"], "properties": chat_props},
                "CompletionRequest": {"type": "object", "required": ["model", "prompt"], "properties": completion_props},
                "EmbeddingRequest": {"type": "object", "required": ["model", "input"], "properties": {
                    "model": {"type": "string"}, "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object", "description": "Kiln extension: {\"type\": \"image_url\", \"image_url\": {\"url\": ...}} for image embedders"}]}}]},
                    "encoding_format": {"type": "string", "enum": ["float", "base64"]}}},
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
                "DetectRequest": {"type": "object", "required": ["model", "text"], "properties": {"model": {"type": "string"}, "text": {"type": "string"}}},
                "Detection": {"type": "object", "properties": {"model": {"type": "string"}, "z_score": {"type": "number"}, "watermarked": {"type": "boolean"},
                    "scored_tokens": {"type": "integer"}, "green_tokens": {"type": "integer"}, "gamma": {"type": "number"}, "z_threshold": {"type": "number"}}},
                "AdapterRequest": {"type": "object", "required": ["model", "name"], "properties": {"model": {"type": "string"}, "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}},
                "Adapters": {"type": "object", "properties": {"model": {"type": "string"}, "adapters": {"type": "array", "items": {"type": "string"}}}},
            }
        }
    })
}
