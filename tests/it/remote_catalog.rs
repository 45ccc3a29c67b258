//! The catalog across instances, end to end on one instance: the page of shared files peers
//! pull (`GET /api/s2s/catalog`), and the `instance:` filter. (Files arriving from other
//! instances need the federation transport; those tests run several instances.)

use std::path::Path;

use crate::library::{json_lines, upload};
use crate::util::*;

/// The status code and body of an HTTP response.
fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_catalog_endpoint_pages_through_local_shared_files_only() {
    let rose = Instance::start("127.0.0.61");
    // The endpoint answers signed requests only: another instance asks.
    let peer = Instance::start_federated("127.0.0.62", &[]);
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, name) in ["one.flac", "two.flac", "three.flac", "private.txt"]
        .iter()
        .enumerate()
    {
        let path = local.path().join(name);
        std::fs::write(&path, format!("content {i}")).unwrap();
        files.push((path, format!("music/{name}")));
    }
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, n)| (p.as_path(), n.as_str()))
        .collect();
    upload(&rose, &a, "alice", &refs);
    assert_exit(&rose.ssh(&a, "alice", &["share", "'music/*.flac'"]), 0);
    let bobs = local.path().join("bob");
    std::fs::write(&bobs, "bob's").unwrap();
    upload(&rose, &b, "bob", &[(&bobs, "bob.ogg")]);
    assert_exit(&rose.ssh(&b, "bob", &["share", "bob.ogg"]), 0);

    // Two files a page: three pages, each cursor taken from the page before.
    let mut seen = Vec::new();
    let mut path = "/api/s2s/catalog?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = status_and_body(&rose.signed_get(&peer, &path));
        assert_eq!(status, 200, "{path}: {body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= 2, "{body}");
        seen.extend(files.iter().cloned());
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = format!("/api/s2s/catalog?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 2, "four shared files, two a page");
    let mut listed: Vec<(String, String)> = seen
        .iter()
        .map(|f| {
            (
                f["owner"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    let alice = format!("@alice@{}", rose.domain);
    let bob = format!("@bob@{}", rose.domain);
    assert_eq!(
        listed,
        [
            (alice.clone(), "music/one.flac".to_owned()),
            (alice.clone(), "music/three.flac".to_owned()),
            (alice.clone(), "music/two.flac".to_owned()),
            (bob.clone(), "bob.ogg".to_owned()),
        ]
    );
    let one = seen.iter().find(|f| f["name"] == "one.flac").unwrap();
    assert_eq!(one["id"], blake3::hash(b"content 0").to_hex().as_str());
    assert_eq!(one["size"], 9);

    // The default page holds them all; a bad limit or cursor is a 400 that says why.
    let (status, _) = status_and_body(&rose.http_get("/api/s2s/catalog"));
    assert_eq!(status, 401, "unsigned requests are refused");
    let (status, body) = status_and_body(&rose.signed_get(&peer, "/api/s2s/catalog"));
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 4);
    assert!(page["next"].is_null(), "{body}");
    for (query, needle) in [
        ("limit=1001", "bad limit \"1001\""),
        ("limit=0", "bad limit \"0\""),
        ("after=abc", "bad cursor \"abc\""),
    ] {
        let (status, body) =
            status_and_body(&rose.signed_get(&peer, &format!("/api/s2s/catalog?{query}")));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(needle), "{query}: {body}");
    }
}

#[test]
fn instance_filters_and_remote_addresses_search_and_browse_what_is_known() {
    let rose = Instance::start("127.0.0.61");
    let a = Key::new("a");
    let local = tempfile::tempdir().unwrap();
    let path = local.path().join("x");
    std::fs::write(&path, "blue").unwrap();
    upload(&rose, &a, "alice", &[(&path, "blue.flac")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "blue.flac"]), 0);

    // This instance's own domain names its local files.
    let here = rose.ssh(
        &a,
        "alice",
        &[
            "search",
            "blue",
            &format!("instance:{}", rose.domain),
            "--json",
        ],
    );
    assert_exit(&here, 0);
    let hits = json_lines(&stdout(&here));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["owner"], format!("@alice@{}", rose.domain));
    // Another instance, or a user there, holds nothing we know of yet.
    for query in ["blue instance:far.example", "user:@alice@far.example"] {
        let far = rose.ssh(&a, "alice", &["search", query, "--json"]);
        assert_exit(&far, 0);
        assert_eq!(stdout(&far), "", "{query}");
    }
    let browse = rose.ssh(&a, "alice", &["browse", "@bob@far.example"]);
    assert_exit(&browse, 1);
    assert!(
        stderr(&browse).contains("no shared file of @bob@far.example has reached this instance"),
        "{}",
        stderr(&browse)
    );
    let bad = rose.ssh(&a, "alice", &["search", "instance:a/b"]);
    assert_exit(&bad, 2);
    assert!(
        stderr(&bad).contains("instance:rose.example"),
        "{}",
        stderr(&bad)
    );
}
