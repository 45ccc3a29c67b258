//! Profiles: `/bio`, `/whois`, WebFinger and `GET /api/s2s/user/{address}` on a real
//! instance, over real `ssh` and raw HTTP.

use serde_json::Value;

use crate::util::*;

/// One HTTP response, split.
struct Response {
    status: u16,
    /// Header lines, names lowercased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn get(rose: &Instance, path: &str) -> Response {
    parse(rose.http_get(path))
}

/// A signed GET, as the federated instance `signer` (the S2S endpoints refuse others).
fn signed_get(rose: &Instance, signer: &Instance, path: &str) -> Response {
    parse(rose.signed_get(signer, path))
}

fn parse(raw: String) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The `ssh-ed25519 AAAA...` part of a key line (no comment).
fn key_line(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `whois NICK --json` as bob sees it.
fn whois_json(rose: &Instance, bob: &Key, nick: &str) -> Value {
    let out = rose.ssh(bob, "bob", &["whois", nick, "--json"]);
    assert_exit(&out, 0);
    serde_json::from_str(stdout(&out).trim()).expect("one JSON object")
}

#[test]
fn a_bio_set_over_ssh_shows_in_whois_json_with_the_profile() {
    let rose = Instance::start("127.0.0.6");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let set = rose.ssh(&a, "alice", &["bio", "hello", "from", "alice"]);
    assert_exit(&set, 0);
    assert!(
        stdout(&set).contains("hello from alice"),
        "{}",
        stdout(&set)
    );
    let shown = rose.ssh(&a, "alice", &["bio"]);
    assert_eq!(stdout(&shown).trim(), "your bio: hello from alice");
    let profile = whois_json(&rose, &b, "alice");
    assert_eq!(profile["address"], format!("@alice@{}", rose.domain));
    assert_eq!(profile["nick"], "alice");
    assert_eq!(profile["domain"], rose.domain.as_str());
    assert_eq!(profile["bio"], "hello from alice");
    assert_eq!(profile["shared_files"], 0);
    let joined = profile["joined"].as_str().expect("joined");
    assert!(joined.len() == 20 && joined.ends_with('Z'), "{joined}");
    let keys = profile["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["public_key"], key_line(&a.public()).as_str());
    assert!(keys[0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    // The plain form says the same.
    let text = stdout(&rose.ssh(&b, "bob", &["whois", "@alice"]));
    for needle in [
        format!("@alice@{}", rose.domain),
        "shares  0 files".to_owned(),
        "bio     hello from alice".to_owned(),
        keys[0]["fingerprint"].as_str().unwrap().to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle:?} missing in:\n{text}");
    }
}

#[test]
fn a_bio_is_sanitized_bounded_and_cleared() {
    let rose = Instance::start("127.0.0.6");
    let (a, b) = (Key::new("a"), Key::new("b"));
    assert_exit(
        &rose.ssh(
            &a,
            "alice",
            &["bio", "\x1b[31mred\x1b[0m \x1b]0;pwned\x07text\u{202e}"],
        ),
        0,
    );
    assert_eq!(whois_json(&rose, &b, "alice")["bio"], "red text");
    // Over the bound: refused, and the bio stays as it was.
    let long = "x".repeat(281);
    let refused = rose.ssh(&a, "alice", &["bio", &long]);
    assert_exit(&refused, 1);
    assert!(
        stderr(&refused).contains("281") && stderr(&refused).contains("280"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(whois_json(&rose, &b, "alice")["bio"], "red text");
    // Only escapes: nothing to keep, refused.
    assert_exit(&rose.ssh(&a, "alice", &["bio", "\x1b[2J"]), 1);
    assert_eq!(whois_json(&rose, &b, "alice")["bio"], "red text");
    // Exactly the bound is fine.
    let longest = "é".repeat(280);
    assert_exit(&rose.ssh(&a, "alice", &["bio", &longest]), 0);
    assert_eq!(whois_json(&rose, &b, "alice")["bio"], longest.as_str());
    assert_exit(&rose.ssh(&a, "alice", &["bio", "--clear"]), 0);
    assert_eq!(whois_json(&rose, &b, "alice")["bio"], "");
}

#[test]
fn whois_of_an_unknown_or_remote_user_says_why_it_cannot() {
    let rose = Instance::start("127.0.0.6");
    let b = Key::new("b");
    let unknown = rose.ssh(&b, "bob", &["whois", "nobody"]);
    assert_exit(&unknown, 1);
    assert!(
        stderr(&unknown).contains("no user @nobody@"),
        "{}",
        stderr(&unknown)
    );
    let remote = rose.ssh(&b, "bob", &["whois", "@alice@elsewhere.example"]);
    assert_exit(&remote, 1);
    // The profile is asked of its home, which does not exist here: a clear error.
    assert!(
        stderr(&remote).contains("elsewhere.example"),
        "{}",
        stderr(&remote)
    );
    assert_exit(&rose.ssh(&b, "bob", &["whois"]), 2);
}

#[test]
fn webfinger_answers_for_a_local_user_with_her_ssh_keys() {
    let rose = Instance::start("127.0.0.6");
    let a = Key::new("a");
    assert_exit(&rose.ssh(&a, "alice", &["bio", "hi"]), 0);
    let profile_url = format!("http://{d}/api/s2s/user/@alice@{d}", d = rose.domain);
    for resource in [
        format!("acct:alice@{}", rose.domain),
        format!("acct%3AALICE%40{}", rose.domain.to_uppercase()),
    ] {
        let r = get(
            &rose,
            &format!("/.well-known/webfinger?resource={resource}"),
        );
        assert_eq!(r.status, 200, "{resource}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/jrd+json"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let jrd = r.json();
        assert_eq!(jrd["subject"], format!("acct:alice@{}", rose.domain));
        let links = jrd["links"].as_array().expect("links");
        let own = links
            .iter()
            .find(|l| l["rel"] == "self")
            .expect("self link");
        assert_eq!(own["type"], "application/json");
        assert_eq!(own["href"], profile_url.as_str());
        let keys: Vec<&str> = links
            .iter()
            .filter(|l| l["rel"] == "https://rosewire.example/ns/ssh-key")
            .filter_map(|l| {
                l["properties"]["https://rosewire.example/ns/ssh-key#public-key"].as_str()
            })
            .collect();
        assert_eq!(keys, [key_line(&a.public())]);
    }
    // rel= keeps only those links.
    let only_self = get(
        &rose,
        &format!(
            "/.well-known/webfinger?resource=acct:alice@{}&rel=self",
            rose.domain
        ),
    )
    .json();
    assert_eq!(only_self["links"].as_array().map(Vec::len), Some(1));
}

#[test]
fn webfinger_refuses_bad_resources_and_unknown_users() {
    let rose = Instance::start("127.0.0.6");
    let a = Key::new("a");
    assert_exit(&rose.ssh(&a, "alice", &["bio", "hi"]), 0);
    let d = &rose.domain;
    for (query, status) in [
        (format!("resource=acct:nobody@{d}"), 404),
        ("resource=acct:alice@elsewhere.example".to_owned(), 404),
        (String::new(), 400),
        ("rel=self".to_owned(), 400),
        ("resource=acct:alice".to_owned(), 400),
        (format!("resource=alice@{d}"), 400),
        (format!("resource=mailto:alice@{d}"), 400),
        (format!("resource=acct:@{d}"), 400),
        (
            format!("resource=acct:alice@{d}&resource=acct:alice@{d}"),
            400,
        ),
    ] {
        let r = get(&rose, &format!("/.well-known/webfinger?{query}"));
        assert_eq!(r.status, status, "{query:?}: {}", r.body);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("*"),
            "{query:?}"
        );
        assert!(!r.body.trim().is_empty(), "{query:?}: a reason is given");
    }
}

#[test]
fn the_user_endpoint_serves_the_profile_whois_shows() {
    let rose = Instance::start("127.0.0.6");
    let peer = Instance::start_federated("127.0.0.7", &[]);
    let (a, b) = (Key::new("a"), Key::new("b"));
    assert_exit(&rose.ssh(&a, "alice", &["bio", "bass"]), 0);
    let whois = whois_json(&rose, &b, "alice");
    // Unsigned, the endpoint refuses.
    let path = format!("/api/s2s/user/@alice@{}", rose.domain);
    assert_eq!(get(&rose, &path).status, 401);
    let d = &rose.domain;
    for path in [
        format!("/api/s2s/user/@alice@{d}"),
        format!("/api/s2s/user/%40Alice%40{d}"),
    ] {
        let r = signed_get(&rose, &peer, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json(), whois, "{path}");
    }
    for (path, status) in [
        (format!("/api/s2s/user/@nobody@{d}"), 404),
        ("/api/s2s/user/@alice@elsewhere.example".to_owned(), 404),
        ("/api/s2s/user/alice".to_owned(), 400),
        ("/api/s2s/user/%40".to_owned(), 400),
        ("/api/s2s/user/%ff%40x".to_owned(), 400),
    ] {
        let r = signed_get(&rose, &peer, &path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
}
