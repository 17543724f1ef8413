//! QR codes of payments: the offline hand-over from a payer's device to a
//! merchant's terminal. The code carries the payment file's text (hex of
//! the protobuf encoding).

use std::path::Path;

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module in PNGs, and the quiet zone in modules.
const PNG_MODULE_PX: usize = 6;
const QUIET_ZONE_MODULES: usize = 4;

pub fn encode(text: &str) -> std::io::Result<QrCode> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the payment ({} bytes of text) does not fit one QR code: {e}; pay with fewer tokens",
                text.len()
            ),
        )
    })
}

/// Two modules per character cell (upper and lower half blocks).
pub fn to_terminal(code: &QrCode) -> String {
    code.render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build()
}

/// A grayscale PNG, black modules on white.
pub fn write_png(code: &QrCode, path: &Path) -> std::io::Result<()> {
    let width = code.width();
    let side = (width + 2 * QUIET_ZONE_MODULES) * PNG_MODULE_PX;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (
                i % width + QUIET_ZONE_MODULES,
                i / width + QUIET_ZONE_MODULES,
            );
            for dy in 0..PNG_MODULE_PX {
                let row = (y * PNG_MODULE_PX + dy) * side;
                let start = row + x * PNG_MODULE_PX;
                pixels[start..start + PNG_MODULE_PX].fill(0);
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let side_u32 = u32::try_from(side).map_err(std::io::Error::other)?;
    let mut encoder = png::Encoder::new(file, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(&pixels)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}
