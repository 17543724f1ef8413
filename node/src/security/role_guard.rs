//! The tower layer in front of every gRPC service that refuses a call the
//! caller's certificate roles do not allow (see [`super::roles`]).
//!
//! With TLS the server requires a client certificate signed by the cluster
//! CA, so every request reaching this layer carries a verified chain; the
//! layer only decides what the verified caller may do. In plaintext mode
//! (development only) there is no identity to check and the layer passes
//! everything through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::roles::{Roles, allowed_roles, roles_of_certificate};
use crate::api::{FORWARD_HOPS_HEADER, REASON_HEADER};

/// Reason code (in [`REASON_HEADER`]) of a refusal.
pub const ROLE_NOT_ALLOWED: &str = "ROLE_NOT_ALLOWED";

#[derive(Clone, Copy, Debug)]
pub struct RoleGuardLayer {
    enforce: bool,
}

impl RoleGuardLayer {
    /// `enforce`: false only for plaintext (no certificates to read).
    pub fn new(enforce: bool) -> Self {
        RoleGuardLayer { enforce }
    }
}

impl<S> tower::Layer<S> for RoleGuardLayer {
    type Service = RoleGuard<S>;

    fn layer(&self, inner: S) -> RoleGuard<S> {
        RoleGuard {
            inner,
            enforce: self.enforce,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RoleGuard<S> {
    inner: S,
    enforce: bool,
}

/// Why a request is refused, as the gRPC status the caller sees.
fn refusal(request_path: &str, relayed: bool, caller: Result<Roles, String>) -> tonic::Status {
    let mut status = match caller {
        Err(problem) => tonic::Status::permission_denied(problem),
        Ok(roles) => tonic::Status::permission_denied(format!(
            "a caller with role {roles} may not call {request_path} (allowed: {})",
            allowed_roles(request_path, relayed)
        )),
    };
    status.metadata_mut().insert(
        REASON_HEADER,
        tonic::metadata::MetadataValue::from_static(ROLE_NOT_ALLOWED),
    );
    status
}

/// The roles of the caller of `request`, from the leaf certificate it
/// presented during the TLS handshake.
fn caller_roles<B>(request: &http::Request<B>) -> Result<Roles, String> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .ok_or_else(|| "no client certificate was presented".to_owned())?;
    let leaf = certs
        .first()
        .ok_or_else(|| "no client certificate was presented".to_owned())?;
    roles_of_certificate(leaf.as_ref()).map_err(|e| e.to_string())
}

/// Whether `request` may proceed; the refusal otherwise.
pub fn authorize<B>(request: &http::Request<B>) -> Result<(), tonic::Status> {
    let path = request.uri().path();
    let relayed = request.headers().contains_key(FORWARD_HOPS_HEADER);
    match caller_roles(request) {
        Ok(roles) if roles.intersects(allowed_roles(path, relayed)) => Ok(()),
        other => Err(refusal(path, relayed, other)),
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for RoleGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.enforce
            && let Err(status) = authorize(&request)
        {
            tracing::warn!(
                path = request.uri().path(),
                reason = %status.message(),
                "refused a call outside the caller's role"
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        Box::pin(self.inner.call(request))
    }
}
