use std::io::{self, Read, Write};

use strata_oci::{Algorithm, Digest, DigestError, DigestReader, DigestWriter, Digester};

const EMPTY_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const EMPTY_SHA512: &str = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
const HELLO_SHA256: &str =
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn check_all<T>(cases: &[T], check: impl Fn(&T) -> Result<(), String>) {
    let failures: Vec<String> = cases.iter().filter_map(|case| check(case).err()).collect();
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_digests_round_trip() {
    let cases = [
        (EMPTY_SHA256, Algorithm::Sha256),
        (EMPTY_SHA512, Algorithm::Sha512),
        (HELLO_SHA256, Algorithm::Sha256),
        (
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            Algorithm::Sha256,
        ),
    ];
    check_all(&cases, |&(input, algorithm)| {
        let digest: Digest = input.parse().map_err(|e| format!("{input:?}: {e}"))?;
        let (_, hex) = input.split_once(':').unwrap_or_default();
        let actual = (
            digest.algorithm(),
            digest.hex().to_owned(),
            digest.to_string(),
        );
        if actual != (algorithm, hex.to_owned(), input.to_owned()) {
            return Err(format!("{input:?}: got {actual:?}"));
        }
        Ok(())
    });
}

#[test]
fn invalid_digests_are_rejected_with_a_reason() {
    let hex64 = &EMPTY_SHA256[7..];
    let sha384 = format!("sha384:{}", "a".repeat(96));
    let sha512_short = format!("sha512:{hex64}");
    let upper = format!("sha256:{}", hex64.to_uppercase());
    let one_upper = format!("sha256:E{}", &hex64[1..]);
    let non_hex = format!("sha256:g{}", &hex64[1..]);
    let short = format!("sha256:{}", &hex64[1..]);
    let long = format!("sha256:{hex64}0");
    let upper_algorithm = format!("SHA256:{hex64}");
    let trailing_space = format!("{EMPTY_SHA256} ");
    let leading_space = format!(" {EMPTY_SHA256}");
    let missing_algorithm = format!(":{hex64}");
    let double_colon = format!("sha256::{hex64}");
    let cases: Vec<(&str, &str)> = vec![
        ("", "expected \"<algorithm>:<hex>\""),
        ("sha256", "expected \"<algorithm>:<hex>\""),
        (hex64, "expected \"<algorithm>:<hex>\""),
        ("sha256:", "has 64 hex characters, found 0"),
        (
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "unsupported algorithm \"md5\"",
        ),
        (&sha384, "unsupported algorithm \"sha384\""),
        (&upper_algorithm, "unsupported algorithm \"SHA256\""),
        (&missing_algorithm, "unsupported algorithm \"\""),
        (&leading_space, "unsupported algorithm \" sha256\""),
        (
            &sha512_short,
            "a sha512 digest has 128 hex characters, found 64",
        ),
        (&short, "found 63"),
        (&long, "found 65"),
        (&trailing_space, "found 65"),
        (&double_colon, "found 65"),
        (&upper, "hex must be lowercase, found 'E'"),
        (&one_upper, "hex must be lowercase"),
        (&non_hex, "'g' is not a hexadecimal digit"),
    ];
    check_all(&cases, |&(input, message)| match input.parse::<Digest>() {
        Ok(digest) => Err(format!("{input:?}: accepted as {digest}")),
        Err(error)
            if error.to_string().contains(message)
                && error.to_string().contains(&format!("{input:?}")) =>
        {
            Ok(())
        }
        Err(error) => Err(format!(
            "{input:?}: {error} does not quote the input and mention {message:?}"
        )),
    });
}

#[test]
fn error_variants_are_structured() {
    assert_eq!(
        "sha256:abc".parse::<Digest>().unwrap_err(),
        DigestError::WrongLength {
            input: "sha256:abc".into(),
            algorithm: Algorithm::Sha256,
            expected: 64,
            found: 3
        }
    );
    assert!(matches!(
        "blake3:abc".parse::<Digest>(),
        Err(DigestError::UnsupportedAlgorithm { algorithm, .. }) if algorithm == "blake3"
    ));
}

#[test]
fn hashing_known_values() {
    assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY_SHA256);
    assert_eq!(Digest::sha512_of(b"").to_string(), EMPTY_SHA512);
    assert_eq!(Digest::sha256_of(b"hello").to_string(), HELLO_SHA256);
    assert_eq!(Digest::of(Algorithm::Sha512, b"").to_string(), EMPTY_SHA512);
    assert!(Digest::sha256_of(b"hello").verify(b"hello"));
    assert!(!Digest::sha256_of(b"hello").verify(b"hello!"));
}

#[test]
fn short_id_is_twelve_hex_characters() {
    assert_eq!(Digest::sha256_of(b"").short_id(), "e3b0c44298fc");
    assert_eq!(Digest::sha512_of(b"").short_id(), "cf83e1357eef");
}

#[test]
fn new_validates_hex() {
    let digest = Digest::new(Algorithm::Sha256, &EMPTY_SHA256[7..]).unwrap();
    assert_eq!(digest.to_string(), EMPTY_SHA256);
    assert!(Digest::new(Algorithm::Sha512, &EMPTY_SHA256[7..]).is_err());
}

#[test]
fn algorithm_names() {
    assert_eq!(Algorithm::Sha256.to_string(), "sha256");
    assert_eq!(Algorithm::Sha512.to_string(), "sha512");
    assert_eq!("sha512".parse::<Algorithm>().unwrap(), Algorithm::Sha512);
    assert!("sha1".parse::<Algorithm>().is_err());
    assert_eq!(Algorithm::Sha512.hex_len(), 128);
}

#[test]
fn ordering_is_by_algorithm_then_hex() {
    let mut digests = [
        Digest::sha512_of(b"a"),
        Digest::sha256_of(b"hello"),
        Digest::sha256_of(b""),
    ];
    digests.sort();
    assert_eq!(
        digests.iter().map(Digest::to_string).collect::<Vec<_>>(),
        [
            HELLO_SHA256.to_owned(),
            EMPTY_SHA256.to_owned(),
            Digest::sha512_of(b"a").to_string()
        ]
    );
}

#[test]
fn streaming_equals_one_shot() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let mut digester = Digester::new(algorithm);
        for chunk in data.chunks(333) {
            digester.update(chunk);
        }
        assert_eq!(digester.algorithm(), algorithm);
        assert_eq!(digester.finish(), Digest::of(algorithm, &data));

        let mut digester = Digester::new(algorithm);
        io::copy(&mut data.as_slice(), &mut digester).unwrap();
        assert_eq!(digester.finish(), Digest::of(algorithm, &data));
    }
}

#[test]
fn digest_reader_counts_and_hashes_what_was_read() {
    let data = b"hello world, this is layer content".repeat(100);
    let mut reader = DigestReader::new(data.as_slice(), Algorithm::Sha256);
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(reader.bytes_read(), 10);
    assert_eq!(DigestReader::bytes(&reader), 10);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let (digest, size) = reader.finish();
    assert_eq!(size, data.len() as u64);
    assert_eq!(digest, Digest::sha256_of(&data));

    let reader = DigestReader::new(io::empty(), Algorithm::Sha512);
    assert_eq!(reader.finish(), (Digest::sha512_of(b""), 0));

    let mut partial = DigestReader::new(data.as_slice(), Algorithm::Sha256);
    partial.read_exact(&mut first).unwrap();
    let remaining = partial.into_inner();
    assert_eq!(remaining.len(), data.len() - 10);
}

/// Accepts at most 7 bytes per call, to exercise short writes.
struct Trickle(Vec<u8>);

impl Write for Trickle {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let accepted = data.len().min(7);
        self.0.extend_from_slice(&data[..accepted]);
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn digest_writer_hashes_only_accepted_bytes() {
    let data = b"some config json".repeat(50);
    let mut writer = DigestWriter::new(Trickle(Vec::new()), Algorithm::Sha256);
    writer.write_all(&data).unwrap();
    writer.flush().unwrap();
    assert_eq!(writer.bytes(), data.len() as u64);
    let (inner, digest, size) = writer.finish();
    assert_eq!(inner.0, data);
    assert_eq!(digest, Digest::sha256_of(&data));
    assert_eq!(size, data.len() as u64);
}

#[test]
fn serde_as_string() {
    let digest = Digest::sha256_of(b"");
    let json = serde_json::to_string(&digest).unwrap();
    assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);

    let error = serde_json::from_str::<Digest>("\"sha256:abc\"").unwrap_err();
    assert!(error.to_string().contains("found 3"), "{error}");
    assert!(serde_json::from_str::<Digest>("42").is_err());
}

#[test]
fn converts_to_and_from_oci_spec() {
    let digest = Digest::sha512_of(b"x");
    let spec: strata_oci::spec::Digest = (&digest).into();
    assert_eq!(spec.to_string(), digest.to_string());
    assert_eq!(Digest::try_from(&spec).unwrap(), digest);

    let unsupported: strata_oci::spec::Digest =
        format!("sha384:{}", "a".repeat(96)).parse().unwrap();
    assert!(Digest::try_from(&unsupported).is_err());
}
