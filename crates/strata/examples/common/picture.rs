//! Pictures for the examples: an RGB canvas with points, lines and a colour map, saved as PNG.
#![allow(dead_code)]

use std::path::Path;

/// An RGB image, row-major, origin at the top left.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Canvas {
        Canvas { width, height, rgb: background.iter().copied().cycle().take(width * height * 3).collect() }
    }

    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn dot(&mut self, x: f64, y: f64, r: i64, c: [u8; 3]) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r {
                    self.set(x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }

    pub fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            self.dot(x0 + t * (x1 - x0), y0 + t * (y1 - y0), 1, c);
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut enc = png::Encoder::new(file, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&self.rgb).map_err(std::io::Error::other)
    }
}

/// A perceptual-ish colour map (dark blue → orange → white) for `t` in [0, 1].
pub fn colormap(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let stops = [[0.0, 7.0, 100.0], [32.0, 107.0, 203.0], [237.0, 255.0, 255.0], [255.0, 170.0, 0.0], [0.0, 2.0, 0.0]];
    let pos = [0.0, 0.16, 0.42, 0.6425, 1.0];
    let k = (1..pos.len()).find(|&k| t <= pos[k]).unwrap_or(pos.len() - 1);
    let u = (t - pos[k - 1]) / (pos[k] - pos[k - 1]);
    let mut c = [0u8; 3];
    for i in 0..3 {
        c[i] = (stops[k - 1][i] + u * (stops[k][i] - stops[k - 1][i])).round() as u8;
    }
    c
}
