//! The QR code of an instance as an SVG image (`GET /api/instances/<id>/qr.svg`, issue 11 §2).
//!
//! wa-hub usually sends the QR as a base64 PNG (sometimes without the `data:` prefix), which a
//! browser shows as it is. Some wa-hub versions and the QR fallback poll can hand over the raw
//! text the QR encodes instead (`2@...`); the console cannot draw that, so the sidecar renders it
//! to SVG here with the `qrcode` crate. [`classify`] tells the two apart, [`render_svg`] draws,
//! and [`handle`] answers the route.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use serde_json::json;

use crate::app::App;
use crate::handlers::Answer;
use crate::rejection::Rejection;
use crate::response::LocalResponse;

/// What a status's `qr` string holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrValue {
    /// An image: a `data:image/...` URL, or base64 of a PNG, JPEG or GIF file without the
    /// prefix. Browsers show it directly; the sidecar does not render it.
    Image,
    /// Anything else: the text the QR code encodes (WhatsApp's `2@...` reference string).
    Text,
}

/// Base64 of the first bytes of the image formats wa-hub's QR libraries produce: PNG
/// (`\x89PNG\r\n\x1a\n`), JPEG (`\xff\xd8\xff`) and GIF (`GIF8`).
const IMAGE_BASE64_PREFIXES: &[&str] = &["iVBORw0KGgo", "/9j/", "R0lGOD"];

/// Tells an image (data URL or bare base64 image) from QR text. Leading and trailing white
/// space is ignored.
pub fn classify(qr: &str) -> QrValue {
    let qr = qr.trim();
    let is_image = qr
        .get(..11)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:image/"))
        || IMAGE_BASE64_PREFIXES.iter().any(|p| qr.starts_with(p));
    if is_image {
        QrValue::Image
    } else {
        QrValue::Text
    }
}

/// Why [`render_svg`] could not draw a QR code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrRenderError {
    /// Empty text encodes nothing worth scanning.
    #[error("the QR text is empty")]
    Empty,
    /// More data than the largest QR code (version 40) holds at error-correction level M.
    #[error("the QR text is too long to encode ({0} bytes)")]
    TooLong(usize),
}

/// Renders `text` (its UTF-8 bytes) as a QR code in SVG: error correction level M (what
/// WhatsApp Web uses), black modules on white with the standard 4-module quiet zone, at least
/// 264×264 px. The SVG has no script and no external reference.
///
/// # Errors
/// [`QrRenderError::Empty`] for empty text; [`QrRenderError::TooLong`] past QR version 40's
/// capacity (2331 bytes at level M).
pub fn render_svg(text: &str) -> Result<String, QrRenderError> {
    if text.is_empty() {
        return Err(QrRenderError::Empty);
    }
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|_| QrRenderError::TooLong(text.len()))?;
    Ok(code
        .render::<svg::Color>()
        .min_dimensions(264, 264)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// `GET /api/instances/<id>/qr.svg`: the instance's raw-text QR as `image/svg+xml`.
///
/// - 200 with the SVG when the status's `qr` is text ([`QrValue::Text`]);
/// - 404 `{"error":"Unknown instance"}` for an instance the engine does not know;
/// - 404 `{"error":"No QR"}` when the status holds no QR;
/// - 409 `{"error":"QR is an image"}` when the QR is a PNG (or another image): show `status.qr`
///   itself (`data:image/png;base64,` + the value when it has no prefix);
/// - 422 `{"error":"QR not renderable"}` when the text cannot be encoded.
///
/// The answer is `Cache-Control: no-store` (the QR changes every ~20 s).
///
/// # Errors
/// [`Rejection::UnknownInstance`] for an instance the engine does not know.
pub fn handle(app: &App, id: &str) -> Answer {
    let status = app.read_engine(|e| e.status(id).cloned());
    let Some(status) = status else {
        return Err(Rejection::UnknownInstance(id.to_owned()));
    };
    let Some(qr) = status.qr.as_deref().filter(|q| !q.trim().is_empty()) else {
        return Ok(LocalResponse::error(
            404,
            "No QR",
            format!("instance {id} has no QR code now"),
        ));
    };
    Ok(match classify(qr) {
        QrValue::Image => LocalResponse::json(
            409,
            &json!({
                "error": "QR is an image",
                "message": "the QR is an image; show the status's qr field (base64 PNG) directly",
            }),
        ),
        QrValue::Text => match render_svg(qr) {
            Ok(svg) => LocalResponse {
                status: 200,
                body: svg.into(),
                headers: vec![("x-content-type-options", "nosniff".to_owned())],
                content_type: "image/svg+xml",
            },
            Err(e) => LocalResponse::error(422, "QR not renderable", e.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_png_with_or_without_data_prefix_is_an_image() {
        assert_eq!(classify("iVBORw0KGgoAAAANSUhEUgAA"), QrValue::Image);
        assert_eq!(
            classify("data:image/png;base64,iVBORw0KGgoAAAA"),
            QrValue::Image
        );
        assert_eq!(classify("DATA:IMAGE/png;base64,xx"), QrValue::Image);
        assert_eq!(classify("  iVBORw0KGgoAAAA\n"), QrValue::Image);
        assert_eq!(classify("/9j/4AAQSkZJRg"), QrValue::Image);
    }

    #[test]
    fn whatsapp_reference_text_is_text() {
        assert_eq!(
            classify("2@AbCdEf==,pubkey+/=,identity=,adv=="),
            QrValue::Text
        );
        assert_eq!(classify("data:text/plain,hi"), QrValue::Text);
        assert_eq!(classify("é"), QrValue::Text);
    }

    #[test]
    fn text_renders_to_a_self_contained_svg() {
        let svg = render_svg("2@hello,world").unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..40]);
        assert!(svg.contains("<svg"));
        assert!(svg.contains("#000000"));
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("href"));
    }

    #[test]
    fn different_texts_render_differently() {
        assert_ne!(render_svg("2@a").unwrap(), render_svg("2@b").unwrap());
    }

    #[test]
    fn empty_and_oversized_texts_are_refused() {
        assert_eq!(render_svg(""), Err(QrRenderError::Empty));
        let long = "x".repeat(3000);
        assert_eq!(render_svg(&long), Err(QrRenderError::TooLong(3000)));
    }
}
