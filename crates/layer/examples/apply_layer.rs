//! Applies an uncompressed layer tar onto a directory and reports timing.
//!
//! Used to compare against GNU tar:
//! `cargo run --release -p strata-layer --example apply_layer -- ROOT LAYER.tar`

use std::error::Error;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use strata_layer::{ApplyOptions, apply_layer};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, layer] = args.as_slice() else {
        return Err("usage: apply_layer ROOT LAYER.tar".into());
    };
    let started = Instant::now();
    let stats = apply_layer(
        Path::new(root),
        File::open(layer)?,
        &ApplyOptions::default(),
    )?;
    println!("{stats:?} in {:.3}s", started.elapsed().as_secs_f64());
    Ok(())
}
