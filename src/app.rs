//! The application: what every adapter (SSH, HTTP) shares.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use rosewire_shell::Address;

use crate::catalog::Catalog;
use crate::chat::Chat;
use crate::config::Config;
use crate::fed::identity::InstanceKey;
use crate::fed::Federation;
use crate::library::Library;
use crate::messages::Messages;
use crate::profile::{Bio, Profile, ProfileKey};
use crate::store::users::{self, KeyRecord, PendingKey, Removed};
use crate::store::{Store, StoreError};
use crate::transfer::{Slots, Sources};

/// Shared state of a running instance. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// The validated configuration this instance runs with.
    pub config: Arc<Config>,
    /// The database, reached through its own thread.
    pub store: Store,
    /// The local chat room and who is online.
    pub chat: Chat,
    /// Users' files on disk and in the catalog.
    pub library: Library,
    /// Shared files and users' libraries, as commands see them.
    pub catalog: Catalog,
    /// Where downloads' bytes come from, verified.
    pub sources: Sources,
    /// Each user's download slots (`library.max_downloads_per_user`), across sessions.
    pub slots: Slots,
    /// Users' keys and profiles, as commands see them.
    pub users: Users,
    /// The instance's federation signing key (the instance key file), named for
    /// `config.base_url()`.
    pub fed_key: Arc<InstanceKey>,
    /// Peers, the outbox and the inbox: the network.
    pub fed: Federation,
    /// Private messages and ignore lists.
    pub messages: Messages,
}

impl App {
    /// The application of an instance signing with `fed_key`.
    pub fn new(config: Config, store: Store, fed_key: Arc<InstanceKey>) -> anyhow::Result<App> {
        let chat = Chat::new(&config.domain, store.clone());
        let library = Library::new(&config.data_dir, store.clone(), config.library.clone());
        let catalog = Catalog::new(store.clone(), &config.domain)
            .with_max_remote_files_per_peer(config.federation.max_remote_files_per_peer);
        let users = Users {
            store: store.clone(),
            domain: config.domain.clone(),
            remote: Arc::default(),
        };
        let fed = Federation::new(&config, fed_key.clone(), store.clone(), catalog.clone())?;
        let mut sources = Sources::new(library.clone(), fed.client().clone());
        if config.dev && config.federation.dev_skip_verify {
            tracing::warn!("federation.dev_skip_verify: bytes from other instances are NOT checked (benchmarks only)");
            sources = sources.unverified_for_benchmarks();
        }
        let slots = Slots::new(config.library.max_downloads_per_user);
        let messages = Messages::new(&config, store.clone(), chat.clone(), fed.clone());
        Ok(App {
            config: Arc::new(config),
            store,
            chat,
            library,
            catalog,
            sources,
            slots,
            users,
            fed_key,
            fed,
            messages,
        })
    }

    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    /// Lets `/whois @nick@domain` ask the user's home instance (signed, with the federation
    /// client), as Mastodon resolves an account: WebFinger on the user's domain (the answer
    /// must be about that very account: the back-check), then the profile at its `self`
    /// link, on that same instance. Done once at start; tests may set their own fetcher.
    pub fn fetch_remote_profiles(&self) {
        let client = self.fed.client().clone();
        let scheme = self.config.scheme();
        let _ = self
            .users
            .set_remote_profiles(Arc::new(move |address: Address| {
                let client = client.clone();
                Box::pin(async move {
                    use crate::fed::{profile, webfinger};
                    let jrd = webfinger::lookup(
                        |url| {
                            let client = client.clone();
                            async move { client.get_json::<webfinger::Jrd>(&url).await }
                        },
                        &address,
                        scheme,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    let url = jrd.profile_url().map(str::to_owned).ok_or_else(|| {
                        format!("the webfinger answer for {address} links no profile")
                    })?;
                    profile::fetch_remote_at(
                            |url| async move {
                                client.get_json::<crate::profile::ProfileDoc>(&url).await
                            },
                            &address,
                            url,
                        )
                        .await
                        .map_err(|e| e.to_string())
                })
            }));
    }

    /// How many peer instances this one knows (the landing page shows it).
    pub fn peer_count(&self) -> usize {
        self.fed.peer_count()
    }
}

/// Fetches the profile of a user of another instance (an address with a domain); the error
/// is a sentence for the person who asked. Federation sets one with
/// [`Users::set_remote_profiles`], typically `fed::profile::fetch_remote` over its client.
pub type RemoteProfiles =
    Arc<dyn Fn(Address) -> BoxFuture<'static, Result<Profile, String>> + Send + Sync>;

/// Why a remote profile could not be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteProfileError {
    /// Nothing fetches remote profiles (federation is not running).
    #[error("this instance cannot reach other instances' profiles yet")]
    Unavailable,
    /// The other instance did not give a valid profile.
    #[error("{0}")]
    Failed(String),
}

/// Users' keys and profiles: the one place commands reach them, so that remote profiles
/// join here. Cheap to clone.
#[derive(Clone)]
pub struct Users {
    /// The database, where users and keys live.
    store: Store,
    /// This instance's domain: the home of every local user.
    domain: String,
    /// How remote profiles are fetched, once federation has set it (shared by every clone).
    remote: Arc<OnceLock<RemoteProfiles>>,
}

impl Users {
    /// The profile of the local user with this nickname (any case).
    pub async fn profile(&self, nick: &str) -> Result<Option<Profile>, StoreError> {
        let nick = nick.to_owned();
        let record = self
            .store
            .call(move |conn| users::profile(conn, &nick))
            .await?;
        Ok(record.map(|r| Profile {
            address: Address::new(&r.nick, &self.domain),
            joined: r.joined,
            shared_files: r.shared_files,
            keys: r
                .keys
                .into_iter()
                .map(|k| ProfileKey {
                    fingerprint: k.fingerprint,
                    public_key: without_comment(&k.public_key),
                })
                .collect(),
            bio: r.bio,
        }))
    }

    /// Replaces the user's bio (an empty [`Bio`] removes it).
    pub async fn set_bio(&self, user_id: i64, bio: &Bio) -> Result<(), StoreError> {
        let bio = bio.as_str().to_owned();
        self.store
            .call(move |conn| users::set_bio(conn, user_id, &bio))
            .await
    }

    /// Sets how remote profiles are fetched; only the first call counts (returns whether it
    /// did).
    pub fn set_remote_profiles(&self, fetch: RemoteProfiles) -> bool {
        self.remote.set(fetch).is_ok()
    }

    /// The profile of a user of another instance (`address` names its domain).
    pub async fn remote_profile(&self, address: &Address) -> Result<Profile, RemoteProfileError> {
        let fetch = self.remote.get().ok_or(RemoteProfileError::Unavailable)?;
        fetch(address.clone())
            .await
            .map_err(RemoteProfileError::Failed)
    }

    /// The local user with this nickname (any case): their id and the nick in display case.
    pub async fn by_nick(&self, nick: &str) -> Result<Option<(i64, String)>, StoreError> {
        let nick = nick.to_owned();
        self.store
            .call(move |conn| users::user_id_by_nick(conn, &nick))
            .await
    }

    /// The user's keys, and those waiting for confirmation at `now`.
    pub async fn keys(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<(Vec<KeyRecord>, Vec<PendingKey>), StoreError> {
        self.store
            .call(move |conn| {
                Ok((
                    users::list_keys(conn, user_id)?,
                    users::list_pending(conn, user_id, now)?,
                ))
            })
            .await
    }

    /// Records a key waiting for its holder to log in with it as `NICK+code`.
    pub async fn propose_key(
        &self,
        user_id: i64,
        fingerprint: &str,
        public_key: &str,
        code: &str,
        now: i64,
    ) -> Result<PendingKey, StoreError> {
        let (fp, key, code) = (
            fingerprint.to_owned(),
            public_key.to_owned(),
            code.to_owned(),
        );
        self.store
            .call(move |conn| users::propose_key(conn, user_id, &fp, &key, &code, now))
            .await
    }

    /// Removes one of the user's keys, or cancels a waiting one.
    pub async fn remove_key(
        &self,
        user_id: i64,
        fingerprint: &str,
        now: i64,
    ) -> Result<Removed, StoreError> {
        let fp = fingerprint.to_owned();
        self.store
            .call(move |conn| users::remove_key(conn, user_id, &fp, now))
            .await
    }
}

/// An OpenSSH key line without its comment (`ssh-ed25519 AAAA...`): a comment added with
/// `/keys add` may name a machine, and profiles are public.
fn without_comment(public_key: &str) -> String {
    let mut fields = public_key.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(algorithm), Some(key)) => format!("{algorithm} {key}"),
        _ => public_key.trim().to_owned(),
    }
}

/// A user whose key has been verified in this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    /// The nickname as first claimed (display case).
    pub nick: String,
    /// SHA256 fingerprint of the key this session logged in with.
    pub fingerprint: String,
}

/// Resolves once the shutdown flag turns true (or its sender is gone).
pub async fn shutting_down(flag: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|down| *down).await;
}
