//! Federation identity: the instance document and its key, on real instances.

use std::sync::Arc;

use rosewire::config::Scheme;
use rosewire::fed::client::{Client, InstanceDoc};
use rosewire::fed::identity::{InstanceKey, PublicKey};

use crate::util::{file_mode, Instance};

/// The JSON body of an HTTP response, after checking its status line.
fn json_body(response: &str) -> InstanceDoc {
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{response}"
    );
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn each_instance_serves_its_key_named_for_its_domain() {
    let mut a = Instance::start_federated("127.0.0.2", &[]);
    let b = Instance::start_federated("127.0.0.3", &[]);
    assert_eq!(a.domain, format!("127.0.0.2:{}", a.http_port));

    let doc_a = json_body(&a.http_get("/api/s2s/instance"));
    let doc_b = json_body(&b.http_get("/api/s2s/instance"));
    for (instance, doc) in [(&a, &doc_a), (&b, &doc_b)] {
        assert_eq!(doc.domain, instance.domain);
        assert_eq!(
            doc.key_id,
            format!("http://{}/api/s2s/instance#main-key", instance.domain)
        );
        assert_eq!(doc.software, "rosewire");
        assert!(doc
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let key = PublicKey::from_pem(&doc.public_key_pem).expect("the key parses");
        // The key checks out against its own domain, as a peer checks it.
        let base = format!("http://{}", instance.domain);
        assert_eq!(doc.key_for(&instance.domain, &base).unwrap(), key);
        let key_file = instance.data_dir().join("instance_ed25519_key");
        assert_eq!(file_mode(&key_file), 0o600);
    }
    assert_ne!(doc_a.public_key_pem, doc_b.public_key_pem);

    // The key is the key file's: the same after a restart, on the same domain.
    a.restart();
    assert_eq!(a.domain, doc_a.domain);
    assert_eq!(json_body(&a.http_get("/api/s2s/instance")), doc_a);
}

#[test]
fn a_peer_fetches_the_instance_document_with_a_signed_get() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let peer = Arc::new(InstanceKey::generate("http://127.0.0.3:1"));
    let client = Client::new(peer, Scheme::Http, true, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let doc = rt
        .block_on(client.instance(&a.domain))
        .expect("the document");
    assert_eq!(doc, json_body(&a.http_get("/api/s2s/instance")));
}
