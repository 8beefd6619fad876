//! The API's machine-readable descriptions, served by the gateway without a token: the OpenAPI
//! document of the HTTP calls at `GET /v1/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations (so it cannot drift from the code), and the AsyncAPI document of
//! the socket's frames at `GET /v1/asyncapi.yaml` (`docs/asyncapi.yaml`, kept in step with
//! [`crate::protocol`] by the tests below).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{self, friends, history, locations, me, nearby, ws};
use crate::protocol::FriendEntry;

/// The AsyncAPI 3.0 document of the socket, embedded at build time.
pub const ASYNCAPI_YAML: &str = include_str!("../../docs/asyncapi.yaml");

/// The OpenAPI document of the client port.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Nearby Friends gateway",
        version = "1.0.0",
        description = "The HTTP calls of the client contract v1. Every call but the two spec \
            documents carries a JWT (`Authorization: Bearer <jwt>`; `sub` is the user id). Errors \
            are `{\"error\": {\"code\", \"message\"}}`; unknown paths answer 404 `not_found`. The \
            socket at `/v1/ws` speaks the frames of the AsyncAPI document at `/v1/asyncapi.yaml`. \
            A guide for client authors is `docs/CLIENTS.md` in the repository.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "The gateway that serves this document")),
    paths(
        ws::ws,
        me::get_me,
        me::patch_me,
        friends::get_friends,
        friends::put_friend,
        friends::delete_friend,
        me::put_sharing,
        nearby::get_nearby,
        locations::post_locations,
        history::get_history,
        history::get_user_history,
        openapi_json,
        asyncapi_yaml,
    ),
    components(schemas(
        http::ErrorBody,
        http::ErrorDetail,
        me::ProfileView,
        me::PatchMe,
        me::Sharing,
        friends::RequestStatus,
        friends::RemovalStatus,
        friends::FriendRequestView,
        friends::FriendRemovalView,
        friends::FriendStateView,
        friends::FriendListEntry,
        friends::FriendsPage,
        nearby::NearbyPage,
        locations::UploadBody,
        locations::UploadItem,
        locations::ItemError,
        locations::UploadResult,
        history::HistoryEntry,
        history::HistoryPage,
        FriendEntry,
    )),
    modifiers(&SecuritySchemes, &RateLimited),
    tags(
        (name = "socket", description = "The WebSocket (frames: `/v1/asyncapi.yaml`)"),
        (name = "profile", description = "The caller's own profile and sharing switch"),
        (name = "friends", description = "Friendships and requests"),
        (name = "nearby", description = "Friends nearby, without a socket"),
        (name = "locations", description = "The caller's own positions: batch upload and history"),
        (name = "spec", description = "These documents"),
    ),
)]
pub struct ApiDoc;

/// Adds the two ways to carry the token.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT (HS256, RS256, ES256 or EdDSA, as the deployment is set up): `sub` is \
                         the user id (a decimal string), `exp` is enforced",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "The same JWT as a query parameter, for the socket only (browsers cannot set \
                 headers on a WebSocket)",
            ))),
        );
    }
}

/// Adds the 429 of the per-user call budget to every call that takes a token and does not
/// list a 429 of its own: every authenticated call counts against it.
#[derive(Debug)]
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, Type};
        let response = ResponseBuilder::new()
            .description(
                "`rate_limited`: over the per-user call budget (`NEARBY_API_RATE_BURST` calls \
                 at once, then `NEARBY_API_RATE_PER_SEC` a second); `Retry-After` says when",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(
                        utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer),
                    ))
                    .description(Some("Seconds to wait"))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    op.responses
                        .responses
                        .entry("429".to_owned())
                        .or_insert_with(|| response.clone().into());
                }
            }
        }
    }
}

/// The OpenAPI document as JSON, built once.
static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!(r#"{{"error":{{"code":"internal","message":"{e}"}}}}"#))
});

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "spec",
    summary = "The OpenAPI document of the HTTP calls (this document)",
    responses((status = 200, description = "OpenAPI 3.1", body = serde_json::Value)),
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
}

/// `GET /v1/asyncapi.yaml`: the socket's frames.
#[utoipa::path(
    get,
    path = "/v1/asyncapi.yaml",
    tag = "spec",
    summary = "The AsyncAPI document of the socket's frames",
    responses((status = 200, description = "AsyncAPI 3.0, YAML", body = String, content_type = "application/yaml")),
)]
pub async fn asyncapi_yaml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], ASYNCAPI_YAML)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use nearby_schemas::LeftReason;
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    use super::*;
    use crate::protocol::{ClientFrame, ServerFrame};

    /// Every reason of a `friend_left`; a new one does not compile until it is listed here.
    fn left_reasons() -> [LeftReason; 4] {
        let all = [
            LeftReason::OutOfRange,
            LeftReason::Inactive,
            LeftReason::SharingOff,
            LeftReason::Unfriended,
        ];
        for r in all {
            match r {
                LeftReason::OutOfRange
                | LeftReason::Inactive
                | LeftReason::SharingOff
                | LeftReason::Unfriended => {}
            }
        }
        all
    }

    /// The `type` tags of an internally tagged enum, read off its schema.
    fn tags(schema: RefOr<Schema>) -> BTreeSet<String> {
        let json = serde_json::to_value(schema).expect("schema serializes");
        let mut out = BTreeSet::new();
        collect_tags(&json, &mut out);
        out
    }

    fn collect_tags(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(values) = map
                    .get("properties")
                    .and_then(|p| p.get("type"))
                    .and_then(|t| t.get("enum"))
                    .and_then(|e| e.as_array())
                {
                    out.extend(values.iter().filter_map(|x| x.as_str()).map(str::to_owned));
                }
                for child in map.values() {
                    collect_tags(child, out);
                }
            }
            serde_json::Value::Array(items) => {
                for child in items {
                    collect_tags(child, out);
                }
            }
            _ => {}
        }
    }

    /// `pub const NAME: TYPE = VALUE;` lines of `pub mod <module>` in protocol.rs.
    fn constants(module: &str) -> Vec<String> {
        let src = include_str!("protocol.rs");
        let start = src
            .find(&format!("pub mod {module} {{"))
            .unwrap_or_else(|| panic!("protocol.rs has `pub mod {module}`"));
        let body = &src[start..];
        let body = &body[..body.find("\n}").expect("module ends")];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .map(|l| {
                let value = l.split('=').nth(1).expect("a value").trim();
                value
                    .trim_end_matches(';')
                    .trim_matches('"')
                    .trim()
                    .to_owned()
            })
            .collect()
    }

    /// Whether `word` appears in the AsyncAPI document as a whole word (YAML scalar or prose).
    fn in_asyncapi(word: &str) -> bool {
        ASYNCAPI_YAML.match_indices(word).any(|(i, _)| {
            let before = ASYNCAPI_YAML[..i].chars().next_back();
            let after = ASYNCAPI_YAML[i + word.len()..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            boundary(before) && boundary(after)
        })
    }

    #[test]
    fn every_frame_type_is_in_the_asyncapi_document() {
        let client = tags(ClientFrame::schema());
        let server = tags(ServerFrame::schema());
        assert_eq!(
            client,
            ["location", "more", "ping"].map(str::to_owned).into(),
            "client frame tags as read off the schema"
        );
        assert!(server.len() >= 6, "server frame tags: {server:?}");
        for tag in client.iter().chain(&server) {
            assert!(
                ASYNCAPI_YAML.contains(&format!("const: {tag}\n")),
                "docs/asyncapi.yaml has no frame with `type: const: {tag}`"
            );
        }
    }

    #[test]
    fn every_error_and_close_code_is_in_the_asyncapi_document() {
        let codes = constants("codes");
        assert!(codes.len() >= 12, "error codes read: {codes:?}");
        for code in &codes {
            assert!(
                ASYNCAPI_YAML.contains(&format!("- {code}\n")),
                "docs/asyncapi.yaml does not list the error code `{code}` in an enum"
            );
        }
        let closes = constants("close");
        assert!(closes.len() >= 4, "close codes read: {closes:?}");
        for code in &closes {
            assert!(
                in_asyncapi(code),
                "docs/asyncapi.yaml does not mention close code {code}"
            );
        }
        for reason in left_reasons() {
            let reason = reason.as_protocol_str();
            assert!(
                ASYNCAPI_YAML.contains(&format!("- {reason}\n")),
                "docs/asyncapi.yaml does not list the friend_left reason `{reason}`"
            );
        }
    }

    #[test]
    fn the_asyncapi_document_is_asyncapi_3() {
        assert!(ASYNCAPI_YAML.starts_with("asyncapi: 3."));
        assert!(!ASYNCAPI_YAML.contains('\t'), "YAML has no tabs");
    }

    #[test]
    fn the_openapi_document_lists_every_operation() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
        let want: BTreeSet<String> = [
            "GET /v1/ws",
            "GET /v1/me",
            "PATCH /v1/me",
            "GET /v1/me/friends",
            "PUT /v1/me/friends/{id}",
            "DELETE /v1/me/friends/{id}",
            "PUT /v1/me/sharing",
            "GET /v1/me/nearby",
            "POST /v1/me/locations",
            "GET /v1/me/history",
            "GET /v1/users/{id}/history",
            "GET /v1/openapi.json",
            "GET /v1/asyncapi.yaml",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(ops, want);
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
