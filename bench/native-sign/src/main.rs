//! Native-Rust baseline for `bench/sign.sh`: the cost of one RS256 (RSA-2048, PKCS#1 v1.5,
//! SHA-256) and one ES256 (P-256, SHA-256) JWS signature with the pure-Rust `rsa` and `p256`
//! crates, compiled natively in release mode. Prints one JSON line per algorithm.

use p256::ecdsa::{signature::Signer as _, Signature, SigningKey};
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use sha2::Sha256;
use std::hint::black_box;
use std::time::Instant;

/// A JWS signing input of the size of a typical access token.
fn message() -> Vec<u8> {
    let mut input = b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.".to_vec();
    input.extend(std::iter::repeat_n(b'A', 400));
    input
}

fn time_per_op(n: u32, mut op: impl FnMut()) -> f64 {
    op(); // warm-up
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let msg = message();
    let mut rng = rand::thread_rng();

    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
    let rsa_signer = RsaSigningKey::<Sha256>::new(rsa_key);
    let rs256 = time_per_op(n, || {
        black_box(rsa_signer.sign_with_rng(&mut rng, black_box(&msg)).to_bytes());
    });

    let ec_key = SigningKey::random(&mut rng);
    let es256 = time_per_op(n, || {
        let sig: Signature = ec_key.sign(black_box(&msg));
        black_box(sig.to_bytes());
    });

    // One login's password hash: PBKDF2-HMAC-SHA256, 100,000 iterations (as in users.rs).
    let mut out = [0u8; 32];
    let pbkdf2_n = 10;
    let pbkdf2 = time_per_op(pbkdf2_n, || {
        pbkdf2::pbkdf2_hmac::<Sha256>(black_box(b"correct horse battery staple"), b"0123456789abcdef", 100_000, &mut out);
        black_box(out);
    });

    println!(r#"{{"runtime":"native Rust (rsa 0.9, p256 0.13)","alg":"RS256","us_per_signature":{rs256:.1},"n":{n}}}"#);
    println!(r#"{{"runtime":"native Rust (pbkdf2 0.12)","alg":"PBKDF2","us_per_signature":{pbkdf2:.1},"n":{pbkdf2_n}}}"#);
    println!(r#"{{"runtime":"native Rust (rsa 0.9, p256 0.13)","alg":"ES256","us_per_signature":{es256:.1},"n":{n}}}"#);
}
