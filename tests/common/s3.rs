//! A minimal S3 client (AWS Signature V4 over blocking reqwest), independent of the
//! SDK alba itself uses, so tests check alba's writes with a second implementation.

use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Status, headers and body of an HTTP response.
pub type HttpResponse = (u16, HeaderMap, Vec<u8>);

/// Credentials and endpoint of an S3 API (path-style addressing).
#[derive(Clone, Debug)]
pub struct S3Client {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub endpoint: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
}

impl S3Client {
    /// Sends one signed request to `/<bucket>/<key>` (key may be empty) and returns the response.
    pub fn request(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let path = format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true));
        let signed = self.sign(method, &path, query, body, headers);
        let url = match signed.query.as_str() {
            "" => format!("{}{path}", self.endpoint),
            q => format!("{}{path}?{q}", self.endpoint),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("invalid HTTP method");
        let mut request = super::http_client()
            .request(method, &url)
            .body(body.to_vec());
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("S3 request to {url} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .unwrap_or_else(|e| panic!("could not read the S3 response from {url}: {e}"));
        (status, headers, body.to_vec())
    }

    /// GET an object: `(status, headers, bytes)`; 404 when it does not exist.
    pub fn get(&self, bucket: &str, key: &str) -> HttpResponse {
        self.request("GET", bucket, key, &[], b"", &[])
    }

    /// HEAD an object: `(status, headers, empty body)`.
    pub fn head(&self, bucket: &str, key: &str) -> HttpResponse {
        self.request("HEAD", bucket, key, &[], b"", &[])
    }

    /// PUT an object with a content type; panics unless the store answers 200.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8], content_type: &str) {
        let (status, _, reply) = self.request(
            "PUT",
            bucket,
            key,
            &[],
            body,
            &[("content-type", content_type)],
        );
        assert_eq!(
            status,
            200,
            "PUT {bucket}/{key}: {}",
            String::from_utf8_lossy(&reply)
        );
    }

    /// DELETE an object; panics unless the store answers 204 or 200.
    pub fn delete(&self, bucket: &str, key: &str) {
        let (status, _, reply) = self.request("DELETE", bucket, key, &[], b"", &[]);
        assert!(
            status == 204 || status == 200,
            "DELETE {bucket}/{key} answered {status}: {}",
            String::from_utf8_lossy(&reply)
        );
    }

    /// Every object key in `bucket` under `prefix`, sorted (ListObjectsV2, all pages).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = token.as_deref() {
                query.push(("continuation-token", t));
            }
            let (status, _, body) = self.request("GET", bucket, "", &query, b"", &[]);
            let xml = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "listing bucket {bucket} failed: {xml}");
            for contents in xml_elements(&xml, "Contents") {
                keys.extend(xml_elements(contents, "Key").map(xml_unescape));
            }
            let truncated = xml_elements(&xml, "IsTruncated").next() == Some("true");
            token = xml_elements(&xml, "NextContinuationToken")
                .next()
                .map(xml_unescape);
            if !truncated || token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Computes the SigV4 headers and canonical query for one request.
    fn sign(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Signed {
        let (amz_date, date) = amz_now();
        let payload_hash = hex::encode(Sha256::digest(body));
        let host = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, h)| h)
            .to_string();
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-content-sha256".into(), payload_hash.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())),
        );
        headers.sort();
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed_headers = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        headers.retain(|(k, _)| k != "host");
        headers.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.key_id
            ),
        ));
        Signed {
            headers,
            query: canonical_query,
        }
    }
}

/// Headers to send and the encoded query string of a signed request.
struct Signed {
    headers: Vec<(String, String)>,
    query: String,
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Current UTC time as (`YYYYMMDDTHHMMSSZ`, `YYYYMMDD`).
fn amz_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock before 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    (format!("{date}T{time}Z"), date)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The text content of every `<tag>…</tag>` element in `xml` (no nesting of the same tag).
pub fn xml_elements<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let found = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(found)
    })
}

/// Resolves the five predefined XML entities.
pub fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
