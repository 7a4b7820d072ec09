//! A throwaway OIDC issuer for tests: a fresh RSA key (made by the `openssl` command, which the
//! local control plane needs anyway), its JWKS, and RS256 tokens with chosen claims, including
//! ones a real issuer would never hand out (expired, wrong key).

use std::process::Command;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub struct TestIssuer {
    pub issuer: String,
    kid: String,
    key: EncodingKey,
    modulus: Vec<u8>,
}

impl TestIssuer {
    /// A new key for `issuer`.
    ///
    /// # Panics
    /// When `openssl` is missing or fails (a broken test machine).
    pub fn generate(issuer: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dbtoken-issuer-{}-{}",
            std::process::id(),
            crate::state::random_uuid()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pem = dir.join("key.pem");
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&pem)
            .arg("2048"));
        let out = run(Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&pem));
        let hex = out
            .trim()
            .strip_prefix("Modulus=")
            .expect("openssl -modulus output");
        let modulus = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let key =
            EncodingKey::from_rsa_pem(&std::fs::read(&pem).expect("read key")).expect("rsa key");
        let _ = std::fs::remove_dir_all(&dir);
        Self {
            issuer: issuer.to_string(),
            kid: crate::state::random_uuid(),
            key,
            modulus,
        }
    }

    /// The issuer's JWKS document (`/openid/v1/jwks` of a Kubernetes API server looks alike).
    pub fn jwks_json(&self) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({"keys": [{
            "use": "sig",
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "n": b64.encode(&self.modulus),
            "e": "AQAB",
        }]})
        .to_string()
    }

    /// An RS256 token with the issuer's `iss`, and `claims` merged over it.
    pub fn sign(&self, claims: Value) -> String {
        let mut body = json!({"iss": self.issuer});
        if let (Some(b), Some(c)) = (body.as_object_mut(), claims.as_object()) {
            for (k, v) in c {
                b.insert(k.clone(), v.clone());
            }
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &body, &self.key).expect("sign")
    }

    /// A token like a Kubernetes ServiceAccount token: `sub`, `aud`, `iat`/`nbf` now and `exp`
    /// `lifetime_s` later (negative: already expired).
    pub fn service_account_token(&self, sub: &str, aud: &str, lifetime_s: i64) -> String {
        let now = crate::state::now_ms() / 1000;
        self.sign(json!({
            "sub": sub,
            "aud": [aud],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
        }))
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
