use serde_json::json;

use super::*;

#[test]
fn renders_chatml_from_kiln_messages() {
    let t = ChatTemplate::builtin("ChatML").unwrap();
    let out = t
        .render_chat(&[ChatMessage::user("hi")], true, None, None)
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let err = ChatTemplate::new("ok\n{% for m in messages %}\n{{ m.content ").unwrap_err();
    match &err {
        Error::Template { name, line, .. } => {
            assert_eq!(name, "chat_template");
            assert_eq!(*line, Some(3), "{err}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("line 3: "), "{err}");
}

#[test]
fn raise_exception_is_a_render_error_with_its_message_and_line() {
    let t = ChatTemplate::new("a\n\n{{ raise_exception('roles must alternate') }}").unwrap();
    let err = t.render(&RenderInput::default()).unwrap_err().to_string();
    assert!(err.contains("roles must alternate"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn python_methods_and_loop_controls_work() {
    let t = ChatTemplate::new(
        "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}\
         {{ m.content.strip().upper() }}{% for k, v in m.items() %}|{{ k }}{% endfor %}{% endfor %}",
    )
    .unwrap();
    let input = RenderInput::new(vec![
        json!({"role": "user", "content": " a b "}),
        json!({"role": "x"}),
    ]);
    assert_eq!(t.render(&input).unwrap(), "A B|role|content");
}

#[test]
fn tojson_matches_python_json_dumps() {
    let t =
        ChatTemplate::new("{{ tools[0] | tojson }}\n{{ tools[0] | tojson(indent=2) }}").unwrap();
    let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"z": 1, "a": [1.0, "é<"]}}});
    let out = t.render(&RenderInput::default().tools(vec![tool])).unwrap();
    assert_eq!(
        out,
        "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"z\": 1, \"a\": [1.0, \"é<\"]}}}\n\
         {\n  \"type\": \"function\",\n  \"function\": {\n    \"name\": \"f\",\n    \"parameters\": {\n      \
         \"z\": 1,\n      \"a\": [\n        1.0,\n        \"é<\"\n      ]\n    }\n  }\n}"
    );
}

#[test]
fn absent_tools_and_tokens_behave_as_in_transformers() {
    // transformers passes tools=None, documents=None; bos/eos only when the tokenizer has them.
    // Booleans print as Python does.
    let t = ChatTemplate::new(
        "{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ bos_token is defined }}",
    )
    .unwrap();
    assert_eq!(
        t.render(&RenderInput::default()).unwrap(),
        "True True True False"
    );
    let input = RenderInput::default()
        .bos_token("<s>")
        .documents(vec![json!({"title": "t", "text": "x"})]);
    assert_eq!(t.render(&input).unwrap(), "True True False True");
}

#[test]
fn extra_variables_and_strftime_now() {
    let t = ChatTemplate::new("{{ enable_thinking }} {{ strftime_now('%Y') | length }}").unwrap();
    let out = t
        .render(&RenderInput::default().var("enable_thinking", false))
        .unwrap();
    assert_eq!(out, "False 4");
}

#[test]
fn reasoning_fields_are_aliased() {
    let t = ChatTemplate::new("{{ messages[0].reasoning_content }}/{{ messages[0].thinking }}")
        .unwrap();
    let input = RenderInput::new(vec![
        json!({"role": "assistant", "content": "x", "reasoning": "r"}),
    ]);
    assert_eq!(t.render(&input).unwrap(), "r/r");
}

#[test]
fn images_become_content_parts() {
    let m = ChatMessage::user("look").with_image(kiln_core::ImageSource::Path {
        path: "a.png".into(),
    });
    assert_eq!(
        message_to_value(&m),
        json!({"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image"}]})
    );
}

#[test]
fn builtin_names() {
    assert_eq!(
        BuiltinTemplate::from_name("Llama-3").unwrap(),
        BuiltinTemplate::Llama3
    );
    let err = BuiltinTemplate::from_name("gpt9").unwrap_err().to_string();
    assert!(err.contains("gpt9") && err.contains("zephyr"), "{err}");
    for t in BuiltinTemplate::ALL {
        ChatTemplate::new(t.source()).unwrap();
    }
}

#[test]
fn a_template_that_loops_for_ever_runs_out_of_fuel() {
    let t = ChatTemplate::new(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    )
    .unwrap();
    let err = t.render(&RenderInput::default()).unwrap_err().to_string();
    assert!(err.contains("fuel"), "{err}");
}

#[test]
fn a_template_that_writes_without_bound_is_stopped() {
    let t = ChatTemplate::new("{% for a in range(100) %}{{ 'x' * 10000000 }}{% endfor %}").unwrap();
    let err = t.render(&RenderInput::default()).unwrap_err().to_string();
    assert!(err.contains("exceed"), "{err}");
}
