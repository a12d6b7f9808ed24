//! The HTTP side of the server: the page and the JSON/PNG API.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page (HTML, CSS and JS in one document, nothing fetched from elsewhere) |
//! | `POST /api/translate?direction=a2b\|b2a&keep_size=true` | `image/png`, the pixels `ugatit translate` writes |
//! | `POST /api/cam?direction=…&keep_size=…` | the CAM heatmap as `image/png` |
//! | `GET /api/model` | the model's facts as JSON |
//! | `GET /api/health` | `200 ok` |
//!
//! The image is the raw request body, or the field `image` of a `multipart/form-data` body.
//! Errors are JSON `{"error": "…"}`: 400 a bad request or corrupt image, 413 a body over the
//! upload limit, 415 bytes that are no supported image (described), 422 an image whose header
//! declares more pixels than allowed (checked before decoding), 503 queue full (with
//! `Retry-After`). A request holds one of the queue's permits from before its body is read until
//! its answer is sent, so at most `queue` uploads are in memory at once.

use super::engine::{Engine, Job, Picture};
use crate::choice::Choice;
use crate::io::image::{decode_rgb8, image_dimensions, RgbImage};
use crate::translate::Direction;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::{oneshot, Semaphore};

/// The page, embedded in the binary.
const PAGE: &str = include_str!("page.html");

/// What the handlers share.
pub struct AppState {
    pub engine: Engine,
    /// One per request that may be in flight (decoding, queued or translating).
    pub permits: Arc<Semaphore>,
    /// `GET /api/model`.
    pub facts: serde_json::Value,
    pub max_upload_bytes: usize,
    pub max_pixels: u64,
}

/// The routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_upload_bytes;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/health", get(|| async { "ok" }))
        .route("/api/model", get(|State(s): State<Arc<AppState>>| async move { Json(s.facts.clone()) }))
        .route("/api/translate", post(|s, q, r| answer(s, q, r, Picture::Image)))
        .route("/api/cam", post(|s, q, r| answer(s, q, r, Picture::Cam)))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError { status, message: message.into() }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The query of the translate and CAM routes.
#[derive(Debug, serde::Deserialize)]
pub struct Params {
    direction: Option<String>,
    keep_size: Option<bool>,
}

fn busy() -> ApiError {
    error(StatusCode::SERVICE_UNAVAILABLE, "the server is busy: its queue is full, try again shortly")
}

async fn answer(
    State(state): State<Arc<AppState>>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
    request: Request,
    picture: Picture,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let name = params.direction.as_deref().unwrap_or("a2b");
    let direction = Direction::from_name(name).ok_or_else(|| {
        error(StatusCode::BAD_REQUEST, format!("unknown direction {name:?}: use one of {}", Direction::names()))
    })?;
    let _permit = state.permits.clone().try_acquire_owned().map_err(|_| busy())?;
    let bytes = read_upload(request, state.max_upload_bytes).await?;
    let max_pixels = state.max_pixels;
    let image = tokio::task::spawn_blocking(move || decode_upload(&bytes, max_pixels))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding failed: {e}")))??;
    let (reply, result) = oneshot::channel();
    let job = Job { direction, picture, keep_size: params.keep_size.unwrap_or(false), image, reply };
    state.engine.submit(job).map_err(|_| busy())?;
    let png = result
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the model worker stopped"))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

fn too_large(limit: usize) -> ApiError {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is over the limit of {} MB (--max-upload-mb)", limit >> 20),
    )
}

/// The image bytes of a request: the body, or its multipart field `image`.
async fn read_upload(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let bytes = if multipart {
        let mut form = Multipart::from_request(request, &()).await.map_err(|e| error(e.status(), e.body_text()))?;
        let mut image = None;
        while let Some(field) = form.next_field().await.map_err(|e| error(e.status(), e.body_text()))? {
            if field.name() == Some("image") {
                image = Some(field.bytes().await.map_err(|e| error(e.status(), e.body_text()))?);
                break;
            }
        }
        image.ok_or_else(|| error(StatusCode::BAD_REQUEST, "the multipart body has no field named \"image\""))?
    } else {
        to_bytes(request.into_body(), limit).await?
    };
    if bytes.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "the request has no image: send its bytes as the body"));
    }
    Ok(bytes)
}

async fn to_bytes(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(err) = source {
            if err.to_string().contains("length limit exceeded") {
                return too_large(limit);
            }
            source = err.source();
        }
        error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
    })
}

/// The upload as RGB, its size checked from the header before any pixel is decoded.
fn decode_upload(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ApiError> {
    let (w, h) = image_dimensions(bytes).map_err(|e| error(StatusCode::UNSUPPORTED_MEDIA_TYPE, describe(bytes, &e)))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the image is {w}×{h} = {:.1} megapixels, over the limit of {:.1} (--max-megapixels)",
                pixels as f64 / 1e6,
                max_pixels as f64 / 1e6
            ),
        ));
    }
    decode_rgb8(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("the image cannot be decoded: {e:#}")))
}

/// What bytes that are no supported image look like.
fn describe(bytes: &[u8], err: &anyhow::Error) -> String {
    let head = &bytes[..bytes.len().min(8)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let text = bytes.iter().take(512).all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    let looks = match bytes {
        [b'<', ..] => "HTML or XML text",
        [b'{', ..] | [b'[', ..] => "JSON text",
        [b'%', b'P', b'D', b'F', ..] => "a PDF document",
        [b'G', b'I', b'F', b'8', ..] => "a GIF image (not supported)",
        [0x1f, 0x8b, ..] => "gzip-compressed data",
        [b'P', b'K', 3, 4, ..] => "a zip archive",
        _ if text => "plain text",
        _ => "binary data of no known image format",
    };
    format!("{err:#}; the body ({} bytes) looks like {looks}, starting {}", bytes.len(), hex.join(" "))
}
