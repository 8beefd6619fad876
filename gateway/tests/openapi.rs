//! The served spec documents against the running gateway: `/v1/openapi.json` is a valid
//! OpenAPI document (checked by Python's `openapi-spec-validator`), every operation it lists
//! answers valid calls with a status it documents and a body that fits the documented schema,
//! the documented operations are exactly the router's, and `/v1/asyncapi.yaml` is AsyncAPI 3.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;

use futures::{SinkExt, StreamExt};
use nearby_testkit::{RawResponse, http_raw, now_ms, token, unique, user};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// The real gateway, started in-process by the test kit.
type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;

/// Routes of the client port that are not part of the API (pages for people).
const NOT_API: &[&str] = &["GET /demo"];

/// Runs `python3 -c script args...` and panics with its output if it fails. Python and the
/// packages the script imports are part of the test environment: missing ones fail the test.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect(
            "python3 runs (it is needed, with openapi-spec-validator and PyYAML, by this test)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `text` in a temporary file, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(suffix: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(unique("nearby-spec-") + suffix);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("temp file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The operations (`METHOD /path`) that `Gateway::router` routes, read from its source: a new
/// route that is not documented fails the comparison below.
fn routed_operations() -> BTreeSet<String> {
    let src = include_str!("../src/http/mod.rs");
    let start = src.find("pub fn router(").expect("Gateway::router");
    let body = &src[start..];
    let body = &body[..body.find("\n    }\n").expect("router ends")];
    let mut ops = BTreeSet::new();
    for part in body.split(".route(").skip(1) {
        let path = part.split('"').nth(1).expect("a route path literal");
        // Up to the `.route(` of the next one; the methods are `get(`, `put(`, ... calls.
        let handlers = &part[path.len() + 2..];
        for method in ["get", "put", "patch", "delete", "post", "head", "options"] {
            let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !handlers[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if called {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    ops
}

/// The documented operations: `METHOD /path` to the operation object.
fn documented_operations(doc: &Value) -> BTreeMap<String, Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if ["parameters", "summary", "description", "servers"].contains(&method.as_str()) {
                continue;
            }
            ops.insert(format!("{} {path}", method.to_uppercase()), op.clone());
        }
    }
    ops
}

/// Checks one answer against the operation's documentation: the status is listed, the
/// content type is the documented one, and a JSON body fits the documented schema.
fn check_answer(doc: &Value, op_name: &str, op: &Value, answer: &Answer) {
    let (status, ctype, body) = (answer.status, answer.ctype.as_deref(), &*answer.body);
    let response = &op["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{op_name} answered {status}, which it does not document (documented: {:?}); body: {body}",
        op["responses"]
            .as_object()
            .map(|r| r.keys().collect::<Vec<_>>())
    );
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            body.is_empty(),
            "{op_name} {status}: documented without a body, got {body}"
        );
        return;
    };
    let ctype = ctype.unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    let media = content.get(essence).unwrap_or_else(|| {
        panic!(
            "{op_name} {status}: content type {ctype:?} is not documented ({:?})",
            content.keys().collect::<Vec<_>>()
        )
    });
    if essence != "application/json" {
        return;
    }
    let instance: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{op_name} {status}: body is not JSON ({e}): {body}"));
    // The schema, with the document's components beside it so that its `$ref`s resolve.
    let mut schema = media["schema"].clone();
    if let Value::Object(map) = &mut schema {
        map.insert("components".into(), doc["components"].clone());
    }
    let validator = jsonschema::draft202012::new(&schema).unwrap_or_else(|e| {
        panic!("{op_name} {status}: the documented schema does not compile: {e}")
    });
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{op_name} {status}: the body does not fit the documented schema: {errors:?}\nbody: {body}"
    );
}

/// What one call answered.
struct Answer {
    status: u16,
    ctype: Option<String>,
    body: String,
}

impl From<RawResponse> for Answer {
    fn from(r: RawResponse) -> Self {
        Self {
            status: r.status,
            ctype: r.header("content-type").map(str::to_owned),
            body: r.body,
        }
    }
}

/// Opens the socket (Authorization header, or nothing when `token` is `None`) and answers with
/// the upgrade's status; an open socket is checked with a ping and closed.
async fn ws_call(gw: &TestGateway, token: Option<&str>) -> Answer {
    let mut req = format!("ws://{}/v1/ws", gw.addr)
        .into_client_request()
        .expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            ws.send(Message::text(r#"{"type":"ping","id":"spec"}"#))
                .await
                .expect("send");
            let pong = loop {
                match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => break t.to_string(),
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("no pong: {other:?}"),
                }
            };
            assert_eq!(
                serde_json::from_str::<Value>(&pong).expect("JSON"),
                json!({"type": "pong", "id": "spec"})
            );
            let _ = ws.close(None).await;
            Answer {
                status: resp.status().as_u16(),
                ctype: None,
                body: String::new(),
            }
        }
        Err(tungstenite::Error::Http(resp)) => Answer {
            status: resp.status().as_u16(),
            ctype: resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        },
        Err(e) => panic!("ws upgrade failed: {e}"),
    }
}

#[tokio::test]
async fn the_served_specs_are_valid_and_every_documented_call_answers_as_documented() {
    let gw = TestGateway::start(&[]).await;

    // The OpenAPI document is served without a token and is valid OpenAPI.
    let spec = http_raw(gw.addr, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(spec.status, 200, "{}", spec.body);
    assert!(
        spec.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let doc: Value = serde_json::from_str(&spec.body).expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let file = TempFile::new(".json", &spec.body);
    let out = python(
        "import json, sys\n\
         from openapi_spec_validator import validate\n\
         validate(json.load(open(sys.argv[1])))\n\
         print('valid')",
        &[file.path()],
    );
    assert_eq!(out.trim(), "valid");

    // The AsyncAPI document is served without a token, parses and is AsyncAPI 3.
    let asyncapi = http_raw(gw.addr, "GET", "/v1/asyncapi.yaml", None, None).await;
    assert_eq!(asyncapi.status, 200);
    assert_eq!(asyncapi.body, nearby_gateway::openapi::ASYNCAPI_YAML);
    let file = TempFile::new(".yaml", &asyncapi.body);
    let out = python(
        "import sys, yaml\n\
         d = yaml.safe_load(open(sys.argv[1]))\n\
         assert str(d['asyncapi']).startswith('3.'), d['asyncapi']\n\
         assert d['channels']['socket']['address'] == '/v1/ws'\n\
         print(len(d['components']['messages']))",
        &[file.path()],
    );
    assert!(out.trim().parse::<usize>().expect("a count") >= 9, "{out}");

    // The documented operations are the router's (but pages for people).
    let documented = documented_operations(&doc);
    let mut routed = routed_operations();
    for page in NOT_API {
        assert!(
            routed.remove(*page),
            "{page} is no longer routed: update NOT_API"
        );
    }
    assert_eq!(
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        routed,
        "documented operations differ from Gateway::router's routes"
    );

    // Every documented operation, called with valid inputs by users made just in time.
    let (a, b) = (user(), user());
    let (ta, tb) = (token(a), token(b));
    let mut exercised = BTreeSet::new();
    let mut answers: Vec<(String, Answer)> = Vec::new();
    let call = |method: &'static str, path: String, tok: Option<String>, body: Option<String>| {
        let addr = gw.addr;
        async move {
            let answer = http_raw(addr, method, &path, tok.as_deref(), body.as_deref()).await;
            Answer::from(answer)
        }
    };

    answers.push((
        "GET /v1/me".into(),
        call("GET", "/v1/me".into(), Some(ta.clone()), None).await,
    ));
    // b exists before a befriends them.
    assert_eq!(
        call("GET", "/v1/me".into(), Some(tb.clone()), None)
            .await
            .status,
        200
    );
    answers.push((
        "PATCH /v1/me".into(),
        call(
            "PATCH",
            "/v1/me".into(),
            Some(ta.clone()),
            Some(r#"{"name":"Ana","avatar_url":null}"#.into()),
        )
        .await,
    ));
    answers.push((
        "PUT /v1/me/friends/{id}".into(),
        call("PUT", format!("/v1/me/friends/{b}"), Some(ta.clone()), None).await,
    ));
    // b accepts, so that the list holds a friend and DELETE has something to remove.
    let accepted = call("PUT", format!("/v1/me/friends/{a}"), Some(tb.clone()), None).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    answers.push(("PUT /v1/me/friends/{id}".into(), accepted));
    answers.push((
        "GET /v1/me/friends".into(),
        call("GET", "/v1/me/friends".into(), Some(ta.clone()), None).await,
    ));
    answers.push((
        "PUT /v1/me/sharing".into(),
        call(
            "PUT",
            "/v1/me/sharing".into(),
            Some(ta.clone()),
            Some(r#"{"enabled":true}"#.into()),
        )
        .await,
    ));
    answers.push((
        "GET /v1/me/nearby".into(),
        call("GET", "/v1/me/nearby".into(), Some(ta.clone()), None).await,
    ));
    let upload = json!({"locations": [
        {"lat": 37.77, "lon": -122.42, "ts": now_ms() - 60_000, "accuracy_m": 8.0},
        {"lat": 37.78, "lon": -122.41, "ts": now_ms()},
    ]});
    answers.push((
        "POST /v1/me/locations".into(),
        call(
            "POST",
            "/v1/me/locations".into(),
            Some(ta.clone()),
            Some(upload.to_string()),
        )
        .await,
    ));
    answers.push((
        "GET /v1/me/history".into(),
        call("GET", "/v1/me/history".into(), Some(ta.clone()), None).await,
    ));
    answers.push((
        "GET /v1/users/{id}/history".into(),
        call(
            "GET",
            format!("/v1/users/{a}/history?limit=10"),
            Some(ta.clone()),
            None,
        )
        .await,
    ));
    answers.push((
        "DELETE /v1/me/friends/{id}".into(),
        call(
            "DELETE",
            format!("/v1/me/friends/{b}"),
            Some(ta.clone()),
            None,
        )
        .await,
    ));
    answers.push(("GET /v1/openapi.json".into(), Answer::from(spec)));
    answers.push(("GET /v1/asyncapi.yaml".into(), Answer::from(asyncapi)));
    answers.push(("GET /v1/ws".into(), ws_call(&gw, Some(&ta)).await));

    for (name, answer) in &answers {
        let op = documented
            .get(name)
            .unwrap_or_else(|| panic!("{name} was called but is not documented"));
        assert!(
            (200..300).contains(&answer.status) || answer.status == 101,
            "{name} with valid inputs answered {}: {}",
            answer.status,
            answer.body
        );
        check_answer(&doc, name, op, answer);
        exercised.insert(name.clone());
    }

    // Without a token, every operation that asks for one answers 401 as documented.
    for (name, op) in &documented {
        if op.get("security").is_none() {
            continue;
        }
        let (method, template) = name.split_once(' ').expect("METHOD /path");
        let path = template.replace("{id}", &b.to_string());
        // The socket checks the token before the upgrade, so a plain GET shows the answer.
        let answer = Answer::from(http_raw(gw.addr, method, &path, None, Some("{}")).await);
        assert_eq!(
            answer.status, 401,
            "{name} without a token: {}",
            answer.body
        );
        check_answer(&doc, name, op, &answer);
        let body: Value = serde_json::from_str(&answer.body).expect("JSON error");
        assert_eq!(body["error"]["code"], "unauthorized", "{name}");
    }

    assert_eq!(
        exercised,
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        "every documented operation is exercised, and nothing else"
    );
    gw.stop().await;
}
