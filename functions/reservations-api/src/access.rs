//! Who is calling and whether the route lets them: every route is declared with the scope it
//! needs ([`crate::routes`]), and a guard in front of each one identifies the caller and checks
//! that scope before the handler runs. It fails closed: no identity is 401 `unauthenticated`, a
//! missing scope 403 `forbidden` naming it, whatever API Gateway let through.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use inventory_core::domain::{Caller, ClientId, Scope};
use lambda_http::request::RequestContext;
use serde::Deserialize;
use utoipa::openapi::path::Paths;

use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;

/// How callers prove who they are.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// Nobody is asked: every request acts as [`Caller::local_admin`]. For `inventory dev` on a
    /// laptop only; it says so when it starts.
    Open,
    /// API Gateway's JWT authorizer has verified the bearer token; its claims are in the
    /// request context (`requestContext.authorizer.jwt`). The Lambda runs this way.
    GatewayJwt,
    /// Static bearer tokens from a file (`inventory dev --tokens`), each standing for a client
    /// and its scopes.
    Tokens(Arc<HashMap<String, Caller>>),
}

/// A route and the scope it needs: what the router guards, the template's
/// `AuthorizationScopes` are checked against and the OpenAPI document describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path, with `{param}` placeholders as API Gateway, axum and OpenAPI write them.
    pub path: String,
    /// What the caller's token must grant (see [`Scope::granted_by`]).
    pub scope: Scope,
    /// Whether the route serves product pages, so that a deployment may open it to anyone
    /// (`INVENTORY_PUBLIC_ITEM_READS`).
    pub product_page: bool,
    /// The codes of [`crate::error::ERROR_CODES`] its use case answers with; those of the edge
    /// (token, scope, body, path and header parsing, availability) come with every route that
    /// has the part they concern.
    pub errors: Vec<&'static str>,
}

impl Route {
    /// The route `paths` describes: the one operation of one handler's `#[utoipa::path]`.
    pub(crate) fn of(
        paths: &Paths,
        scope: Scope,
        product_page: bool,
        errors: &[&'static str],
    ) -> Self {
        let mut operations = paths.paths.iter().flat_map(|(path, item)| {
            crate::openapi::operations(item).map(move |(method, _)| (method, path.clone()))
        });
        let (method, path) = operations
            .next()
            .expect("a route's handler declares its method and path with #[utoipa::path]");
        assert!(
            operations.next().is_none(),
            "one operation per route: {path}"
        );
        Self {
            method,
            path,
            scope,
            product_page,
            errors: errors.to_vec(),
        }
    }
}

/// What the guard of one route knows.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) route: Route,
    pub(crate) authentication: Authentication,
    pub(crate) public: bool,
}

/// Identifies the caller, checks the route's scope and hands the caller to the handler; then
/// refuses a body declared over the limit.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Response {
    if guard.public {
        // Open to anyone; a caller who does identify may still see what needs more (an
        // admin's `?detail=buckets`).
        if let Ok(caller) = identify(&guard.authentication, &request) {
            request.extensions_mut().insert(caller);
        }
    } else {
        let caller = match identify(&guard.authentication, &request) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.into_response(),
        };
        if !caller.may(guard.route.scope) {
            return forbidden(guard.route.scope).into_response();
        }
        request.extensions_mut().insert(caller);
    }
    if declares_too_large_a_body(&request) {
        return ApiError::payload_too_large().into_response();
    }
    next.run(request).await
}

/// A body declared over the limit is refused on every route, read or not; [`crate::extract::JsonBody`]
/// also counts what arrives, for bodies that declare no length.
fn declares_too_large_a_body(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
}

fn identify(authentication: &Authentication, request: &Request) -> Result<Caller, ApiError> {
    match authentication {
        Authentication::Open => Ok(Caller::local_admin()),
        Authentication::GatewayJwt => caller_from_jwt(request),
        Authentication::Tokens(tokens) => {
            let token = bearer_token(request)?;
            tokens
                .get(token)
                .cloned()
                .ok_or_else(|| unauthenticated("the bearer token is not one of this service's"))
        }
    }
}

fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("send a token as Authorization: Bearer <token>"))?;
    value
        .to_str()
        .ok()
        .and_then(|value| {
            let (kind, token) = value.trim().split_once(' ')?;
            kind.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| unauthenticated("the Authorization header must be: Bearer <token>"))
}

/// The caller API Gateway's JWT authorizer verified: the client from the token's `client_id`
/// claim (Cognito, Okta), else `azp` (Auth0, Keycloak), else `sub`; the scopes from the
/// authorizer's list, else the `scope` claim (space-separated), else `scp`.
fn caller_from_jwt(request: &Request) -> Result<Caller, ApiError> {
    let jwt = request
        .extensions()
        .get::<RequestContext>()
        .and_then(RequestContext::authorizer)
        .and_then(|authorizer| authorizer.jwt.as_ref())
        .ok_or_else(|| unauthenticated("no verified token came with the request"))?;
    let claim = |name: &str| jwt.claims.get(name).map(String::as_str);
    let client = ["client_id", "azp", "sub"]
        .into_iter()
        .find_map(|name| claim(name).filter(|value| !value.is_empty()))
        .ok_or_else(|| unauthenticated("the token names no client (client_id, azp or sub)"))?;
    let client_id = ClientId::parse(client)
        .map_err(|err| unauthenticated(&format!("the token's client id is unusable: {err}")))?;
    let listed = jwt.scopes.iter().flatten().map(String::as_str);
    let claimed = claim("scope")
        .or_else(|| claim("scp"))
        .into_iter()
        .flat_map(|text| text.trim_matches(['[', ']']).split([' ', ',']));
    let scopes = listed.chain(claimed).filter_map(Scope::from_name);
    Ok(Caller::new(client_id, scopes))
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new("unauthenticated", message)
}

fn forbidden(scope: Scope) -> ApiError {
    let message = if scope == Scope::Admin {
        format!("this route needs the scope {scope}")
    } else {
        format!(
            "this route needs the scope {scope} (or {})",
            Scope::Admin.name()
        )
    };
    ApiError::new("forbidden", message).with("scope", scope.name())
}

/// The caller the route's guard identified, if any: on a public route, one who identified
/// anyway.
#[derive(Debug, Clone)]
pub struct MaybeAuthenticated(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthenticated {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(Self(parts.extensions.get::<Caller>().cloned()))
    }
}

/// The caller the route's guard identified. A handler that asks for it on a route whose guard
/// did not identify one (a public route) answers 401: it fails closed.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Self)
            .ok_or_else(|| unauthenticated("this route needs an authenticated caller"))
    }
}

/// A token file: `{"tokens": [{"token": "…", "client_id": "…", "scopes": ["inventory/reserve"]}]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    client_id: ClientId,
    scopes: Vec<Scope>,
}

/// Shortest token accepted from a token file: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

impl Authentication {
    /// Static tokens from the JSON text of a token file. Refuses a file that is not of that
    /// shape, names an unknown scope, repeats a token or has a token shorter than
    /// [`MIN_TOKEN_LEN`] characters, saying where.
    pub fn from_token_file(text: &str) -> Result<Self, String> {
        let file: TokenFile = {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|err| format!("at {}: {}", err.path(), err.inner()))?
        };
        if file.tokens.is_empty() {
            return Err("\"tokens\" lists no token".to_owned());
        }
        let mut tokens = HashMap::new();
        for (index, entry) in file.tokens.into_iter().enumerate() {
            if entry.token.len() < MIN_TOKEN_LEN
                || !entry.token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "tokens[{index}].token must be at least {MIN_TOKEN_LEN} visible ASCII characters"
                ));
            }
            if entry.scopes.is_empty() {
                return Err(format!("tokens[{index}].scopes lists no scope"));
            }
            let caller = Caller::new(entry.client_id, entry.scopes);
            if tokens.insert(entry.token, caller).is_some() {
                return Err(format!("tokens[{index}].token appears twice"));
            }
        }
        Ok(Self::Tokens(Arc::new(tokens)))
    }
}

/// `WWW-Authenticate` for 401 answers (RFC 6750).
pub(crate) const BEARER_CHALLENGE: HeaderValue = HeaderValue::from_static("Bearer");
