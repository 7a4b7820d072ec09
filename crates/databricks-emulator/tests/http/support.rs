//! Fixtures: an emulator with an admin and a plain user, and small request helpers.

use std::time::Duration;

use databricks_emulator::{Emulator, EmulatorConfig, EmulatorHandle, SeededUser};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct World {
    pub emulator: EmulatorHandle,
    pub admin: SeededUser,
    pub user: SeededUser,
    pub http: reqwest::Client,
}

pub async fn world() -> World {
    world_with(EmulatorConfig::default()).await
}

pub async fn world_with(config: EmulatorConfig) -> World {
    let emulator = Emulator::start(config).await.expect("start emulator");
    let admin = emulator.add_user("admin@example.com", true);
    let user = emulator.add_user("user@example.com", false);
    World {
        emulator,
        admin,
        user,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

/// Status and JSON body (Null when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &Value {
        &self.body["error_code"]
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl World {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.base_url())
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Reply {
        self.call(Method::GET, path, Some(bearer), None).await
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(bearer), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, bearer: &str) -> Reply {
        self.call(Method::DELETE, path, Some(bearer), None).await
    }

    /// Create a token for the bearer's identity; panics unless it succeeds.
    pub async fn create(&self, bearer: &str, body: Value) -> (String, Value) {
        let r = self.post("/api/2.0/token/create", bearer, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let value = r.body["token_value"].as_str().unwrap().to_string();
        (value, r.body["token_info"].clone())
    }

    pub async fn form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let req = self.http.post(self.url(path)).form(form);
        reply(req.send().await.expect("request")).await
    }
}

pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Wait for `cond` to hold, polling; fail after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn is_token_value(v: &str) -> bool {
    v.len() == 36 && v.starts_with("dapi") && v[4..].chars().all(|c| c.is_ascii_hexdigit())
}

pub fn ids(list: &Value) -> Vec<String> {
    list["token_infos"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["token_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
