//! Single-thread throughput and ratio of strata-deflate against zlib-rs level 1 (flate2, what
//! push used before), on the files given, cut into 4 MiB pieces as push cuts layers:
//!
//!     cargo run --release -p strata-deflate --example throughput -- FILE...
//!
//! Prints the best of 5 passes (wall time: run it on a quiet machine). Checks first that the
//! output decompresses to the input.

use std::io::{Read, Write};
use std::time::Instant;

const PIECE: usize = 4 << 20;

fn best_of_5(data: &[u8], mut compress: impl FnMut(&[u8]) -> usize) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut size = 0;
    for _ in 0..5 {
        let start = Instant::now();
        size = data.chunks(PIECE).map(&mut compress).sum();
        best = best.min(start.elapsed().as_secs_f64());
    }
    (data.len() as f64 / best / 1e6, size)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = Vec::new();
    for path in std::env::args().skip(1) {
        data.extend(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?);
    }
    if data.is_empty() {
        return Err("usage: throughput FILE... (files to compress, non-empty)".into());
    }
    let mut gz = Vec::new();
    for piece in data.chunks(PIECE) {
        strata_deflate::gzip_member(piece, &mut gz);
    }
    let mut back = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back)?;
    if back != data {
        return Err("the output does not decompress to the input".into());
    }

    let mut out = Vec::with_capacity(strata_deflate::max_gzip_len(PIECE));
    let ours = best_of_5(&data, |piece| {
        out.clear();
        strata_deflate::gzip_member(piece, &mut out);
        out.len()
    });
    let zlib = best_of_5(&data, |piece| {
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::fast());
        encoder.write_all(piece).expect("in memory");
        encoder.finish().expect("in memory").len()
    });
    let n = data.len() as f64;
    println!(
        "{} bytes in {} pieces of 4 MiB",
        data.len(),
        data.len().div_ceil(PIECE)
    );
    for (name, (speed, size)) in [("strata-deflate", ours), ("zlib-rs level 1", zlib)] {
        println!("{name:16} {speed:6.0} MB/s  ratio {:.3}", size as f64 / n);
    }
    println!("speed ratio strata-deflate/zlib-rs {:.2}", ours.0 / zlib.0);
    Ok(())
}
