//! Every output decompresses to the input: through flate2 (zlib-rs's inflate) here, and
//! through GNU gzip where it is installed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use strata_deflate::{deflate, gzip_member, max_gzip_len};

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut back = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut back)
        .expect("valid gzip");
    back
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = Vec::new();
    gzip_member(data, &mut gz);
    gz
}

/// xorshift32: inputs the tests can rebuild without a dependency.
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn text(n: usize, rng: &mut Rng) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "layer",
        "image",
        "the ",
        "registry",
        "\n",
        "manifest",
        "blob",
        "digest",
        "sha256:",
        "push",
        "of ",
        "/usr/share/doc/",
    ];
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(WORDS[rng.next() as usize % WORDS.len()].as_bytes());
        if rng.next() % 7 < 1 {
            out.extend_from_slice(format!("{} ", rng.next() % 1000).as_bytes());
        }
    }
    out.truncate(n);
    out
}

/// 300 random bytes, zeros up to `distance`, the 300 bytes again: the repeat can only be found
/// at exactly `distance` back (the zeros are matched 258 bytes at a time up to it).
fn repeat_at(distance: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = rng.bytes(300);
    data.iter_mut().for_each(|b| *b |= 1);
    data.resize(distance, 0);
    data.extend_from_within(..300);
    data
}

/// Named inputs that exercise each path of the encoder.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng(0x1234_5678);
    let random_block = rng.bytes(40_000);
    let at_32768 = repeat_at(32_768, &mut rng);
    let at_32769 = repeat_at(32_769, &mut rng);
    let mut mix = Vec::new();
    for i in 0..40 {
        match i % 4 {
            0 => mix.extend(rng.bytes(30_000 + i * 1000)),
            1 => mix.extend(text(50_000, &mut rng)),
            2 => mix.extend(std::iter::repeat_n(i as u8, 70_000)),
            _ => mix.extend_from_slice(&random_block),
        }
    }
    vec![
        ("empty", Vec::new()),
        ("one byte", vec![42]),
        ("seven bytes", b"abcabca".to_vec()),
        ("nine equal bytes", vec![b'x'; 9]),
        ("zeros", vec![0; 1_000_000]),
        (
            "zeros, block size plus a few",
            vec![0; strata_deflate::BLOCK + 5],
        ),
        ("random", rng.bytes(300_000)),
        ("random, exactly 65535", rng.bytes(65_535)),
        ("random, 65536", rng.bytes(65_536)),
        ("random, two stored blocks", rng.bytes(200_000)),
        ("text", text(500_000, &mut rng)),
        (
            "two symbols",
            (0..100_000)
                .map(|i| if (i * 7919) % 13 < 6 { b'a' } else { b'b' })
                .collect(),
        ),
        ("distance 32768", at_32768),
        ("distance 32769", at_32769),
        ("4 MiB mix", {
            let mut m = mix.clone();
            m.resize(4 << 20, 7);
            m
        }),
        ("mix", mix),
    ]
}

#[test]
fn gzip_members_decompress_to_their_input() {
    for (name, data) in cases() {
        let gz = gzip(&data);
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8], "{name}");
        assert!(gunzip(&gz) == data, "{name}: round trip");
        assert_eq!(gz, gzip(&data), "{name}: deterministic");
        // Never much larger than the input (stored blocks cost 5 bytes per 64 KiB).
        assert!(
            gz.len() <= max_gzip_len(data.len()),
            "{name}: {} bytes",
            gz.len()
        );
        assert!(
            gz.len() <= data.len() + data.len() / 8000 + 64,
            "{name}: {} bytes",
            gz.len()
        );
    }
}

#[test]
fn a_repeat_32768_back_is_matched_and_one_32769_back_is_not() {
    // A match 32769 back would not decompress (zlib: "invalid distance too far back").
    let mut rng = Rng(5);
    let (inside, beyond) = (repeat_at(32_768, &mut rng), repeat_at(32_769, &mut rng));
    let (inside_gz, beyond_gz) = (gzip(&inside), gzip(&beyond));
    assert!(gunzip(&inside_gz) == inside && gunzip(&beyond_gz) == beyond);
    // The repeat costs a few bytes as a match, ~300 as literals.
    assert!(
        inside_gz.len() + 200 < beyond_gz.len(),
        "{} vs {}",
        inside_gz.len(),
        beyond_gz.len()
    );
}

#[test]
fn compressible_inputs_shrink() {
    for (name, data, most) in [
        ("zeros", vec![0u8; 1 << 20], 0.01),
        ("text", text(1 << 20, &mut Rng(9)), 0.5),
    ] {
        let gz = gzip(&data);
        assert!(
            (gz.len() as f64) < data.len() as f64 * most,
            "{name}: {} bytes",
            gz.len()
        );
    }
}

#[test]
fn raw_deflate_streams_inflate() {
    for (name, data) in cases() {
        let mut raw = Vec::new();
        deflate(&data, &mut raw);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_end(&mut back)
            .expect(name);
        assert!(back == data, "{name}");
    }
}

#[test]
fn concatenated_members_decompress_to_the_concatenation() {
    let all = cases();
    let mut gz = Vec::new();
    let mut expected = Vec::new();
    for (_, data) in &all {
        gzip_member(data, &mut gz);
        expected.extend_from_slice(data);
    }
    assert!(gunzip(&gz) == expected);
}

#[test]
fn many_random_structured_inputs_round_trip() {
    // Short inputs built from a few random pieces repeated at random distances: many match
    // lengths, distances, block ends and tails.
    let mut rng = Rng(77);
    for round in 0..400 {
        let alphabet = 1 + rng.next() % 255;
        let len = (rng.next() % 200_000) as usize >> (rng.next() % 10);
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            if data.len() > 4 && rng.next() & 1 == 0 {
                let distance = 1 + rng.next() as usize % data.len().min(40_000);
                let copy = 1 + rng.next() as usize % 300;
                for _ in 0..copy {
                    data.push(data[data.len() - distance]);
                }
            } else {
                for _ in 0..1 + rng.next() % 20 {
                    data.push((rng.next() % alphabet) as u8);
                }
            }
        }
        let gz = gzip(&data);
        let mut back = Vec::new();
        let result = flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back);
        if result.is_err() {
            std::fs::write("/tmp/deflate-fail.gz", &gz).unwrap();
            std::fs::write("/tmp/deflate-fail.bin", &data).unwrap();
        }
        assert!(
            result.is_ok() && back == data,
            "round {round}, {} bytes, alphabet {alphabet}: {result:?}",
            data.len()
        );
    }
}

#[test]
fn gnu_gzip_reads_the_members() {
    if Command::new("gzip").arg("--version").output().is_err() {
        eprintln!("skipped: no gzip binary");
        return;
    }
    for (name, data) in cases() {
        let mut gz = Vec::new();
        // Two members: gzip reads a series of members as one file.
        gzip_member(&data, &mut gz);
        gzip_member(b"end", &mut gz);
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&gz));
        let output = child.wait_with_output().expect("gzip output");
        writer.join().expect("writer").expect("write");
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut expected = data.clone();
        expected.extend_from_slice(b"end");
        assert!(output.stdout == expected, "{name}");
    }
}
