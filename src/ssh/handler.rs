//! The russh `Handler`: authentication and channel bookkeeping, nothing else.
//!
//! **Invariant:** identity is decided only in `auth_publickey`, for a key whose signature
//! russh has verified. `auth_publickey_offered` may refuse early but never grants anything.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::sync::watch;
use tracing::{Instrument, Span};

use crate::app::{App, User};
use crate::chat::unix_now;
use crate::nick::{self, Login};
use crate::store::users::PENDING_KEY_TTL_SECS;
use crate::store::{self, AuthOutcome, ConfirmOutcome};

/// What a client that could not log in is told through keyboard-interactive.
const NO_KEY_HELP: &str = "RoseWire logs you in with an SSH key; there are no passwords.\n\
Make a key once with:  ssh-keygen -t ed25519\n\
then connect again with:  ssh -p PORT YOURNICK@HOST\n\
The first key to use a free nickname owns it.\n";

pub struct Handler {
    app: App,
    peer: SocketAddr,
    span: Span,
    shutdown: watch::Receiver<bool>,
    /// Set once a verified key has been accepted for the requested nickname.
    user: Option<User>,
    /// Why the last public key was refused, told to the client through keyboard-interactive.
    refusal: Option<String>,
    /// Moves this connection out of the unauthenticated count once a key is accepted.
    login: super::Login,
    /// Session channels open on this connection now, at most `ssh.max_sessions`.
    sessions: Arc<AtomicUsize>,
}

/// SSH_OPEN_RESOURCE_SHORTAGE (RFC 4254): the reason code for a refused session channel.
const OPEN_RESOURCE_SHORTAGE: u32 = 4;

/// Gives a session channel's place back when its task ends, panicked or not.
struct SessionPlace(Arc<AtomicUsize>);

impl Drop for SessionPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Handler {
    pub fn new(
        app: App,
        peer: SocketAddr,
        span: Span,
        shutdown: watch::Receiver<bool>,
        login: super::Login,
    ) -> Handler {
        Handler {
            app,
            peer,
            span,
            shutdown,
            user: None,
            refusal: None,
            login,
            sessions: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn reject() -> Auth {
        Auth::Reject {
            proceed_with_methods: None,
            partial_success: false,
        }
    }

    /// A verified key logging in as `user`: (user id, nick, whether it was just claimed), or
    /// `None` with `self.refusal` set. Refusals never name the nickname that owns a key.
    async fn claim_or_know(
        &mut self,
        user: &str,
        fingerprint: &str,
        openssh: String,
    ) -> Option<(i64, String, bool)> {
        let (nick, fp) = (user.to_owned(), fingerprint.to_owned());
        let outcome = self
            .app
            .store
            .call(move |conn| store::users::authenticate(conn, &nick, &fp, &openssh, unix_now()))
            .await;
        let refusal = match outcome {
            Ok(AuthOutcome::Known { user_id, nick }) => return Some((user_id, nick, false)),
            Ok(AuthOutcome::Claimed { user_id, nick }) => return Some((user_id, nick, true)),
            Ok(AuthOutcome::NickTaken) => {
                tracing::info!(nick = user, %fingerprint, "key refused: nickname owned by another key");
                format!(
                    "the nickname {user:?} belongs to another key; pick another nickname, \
                     or add this key from a session of {user} with /keys add and confirm it"
                )
            }
            Ok(AuthOutcome::NickLookalike) => {
                tracing::info!(nick = user, %fingerprint, "claim refused: nickname looks like another");
                format!(
                    "the nickname {user:?} looks too much like an existing or reserved \
                     nickname; pick another"
                )
            }
            Ok(AuthOutcome::KeyBelongsTo { owner }) => {
                tracing::info!(nick = user, %fingerprint, %owner, "key refused: it belongs to another nickname");
                format!(
                    "this key is registered to another nickname on this instance; log in with \
                     that nickname, or use another key for {user:?}"
                )
            }
            Err(e) => {
                tracing::error!("authentication failed on the store: {e}");
                return None;
            }
        };
        self.refusal = Some(refusal);
        None
    }

    /// A verified key logging in as `nick+code` to confirm itself as one of `nick`'s keys.
    async fn confirm(
        &mut self,
        nick: &str,
        code: &str,
        fingerprint: &str,
    ) -> Option<(i64, String, bool)> {
        let (n, c, fp) = (nick.to_owned(), code.to_owned(), fingerprint.to_owned());
        let outcome = self
            .app
            .store
            .call(move |conn| store::users::confirm_key(conn, &n, &c, &fp, unix_now()))
            .await;
        let refusal = match outcome {
            Ok(ConfirmOutcome::Confirmed { user_id, nick }) => {
                tracing::info!(%nick, %fingerprint, "key confirmed");
                return Some((user_id, nick, false));
            }
            Ok(ConfirmOutcome::NoMatch) => {
                tracing::info!(%nick, %fingerprint, "key confirmation refused: no match");
                format!(
                    "no key waiting for {nick:?} matches this key and the code {code:?}; codes \
                     last {} minutes: run /keys add again in a session of {nick}",
                    PENDING_KEY_TTL_SECS / 60
                )
            }
            Ok(ConfirmOutcome::KeyBelongsTo { owner }) => {
                tracing::info!(%nick, %fingerprint, %owner, "key confirmation refused: it belongs to another nickname");
                format!(
                    "this key is registered to another nickname on this instance; remove it \
                     there with /keys remove before confirming it for {nick:?}"
                )
            }
            Err(e) => {
                tracing::error!("key confirmation failed on the store: {e}");
                return None;
            }
        };
        self.refusal = Some(refusal);
        None
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        _offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Nothing is decided for a key merely offered; an impossible nickname is refused early.
        match nick::parse_login(user) {
            Ok(_) => Ok(Auth::Accept),
            Err(e) => {
                self.refusal = Some(e.to_string());
                Ok(Self::reject())
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let login = match nick::parse_login(user) {
            Ok(login) => login,
            Err(e) => {
                self.refusal = Some(e.to_string());
                return Ok(Self::reject());
            }
        };
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let Ok(openssh) = key.public_key.to_openssh() else {
            return Ok(Self::reject());
        };
        let decided = match login {
            Login::Nick(nick) => self.claim_or_know(nick, &fingerprint, openssh).await,
            Login::Confirm { nick, code } => self.confirm(nick, code, &fingerprint).await,
        };
        let Some((user_id, nick, claimed)) = decided else {
            return Ok(Self::reject());
        };
        if claimed {
            tracing::info!(%nick, %fingerprint, "nickname claimed");
        }
        if !self.login.complete() {
            tracing::warn!(%nick, "login refused: ssh.max_connections sessions are open");
            self.refusal = Some("the server is full; try again later".into());
            return Ok(Self::reject());
        }
        tracing::info!(%nick, %fingerprint, "key accepted");
        self.span.record("user", nick.as_str());
        self.user = Some(User {
            id: user_id,
            nick,
            fingerprint,
        });
        Ok(Auth::Accept)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if response.is_some() {
            return Ok(Self::reject());
        }
        let mut text = String::new();
        if let Some(why) = &self.refusal {
            text.push_str(&format!("Refused: {why}\n"));
        }
        text.push_str(NO_KEY_HELP);
        Ok(Auth::Partial {
            name: Cow::Borrowed("RoseWire"),
            instructions: Cow::Owned(text),
            prompts: Cow::Borrowed(&[]),
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(user) = self.user.clone() else {
            drop(reply);
            return Ok(());
        };
        // As OpenSSH's MaxSessions: each session is a task, and an SFTP session holds up to
        // MAX_OPEN_HANDLES files, so one connection must not open them without end.
        let max = self.app.config.ssh.max_sessions;
        let taken = self
            .sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            tracing::info!(max, "session channel refused: too many on this connection");
            reply
                .reject(ChannelOpenFailure::Other {
                    code: OPEN_RESOURCE_SHORTAGE,
                    reason: format!(
                        "too many sessions on this connection: at most {max}; close one first"
                    ),
                })
                .await;
            return Ok(());
        }
        let place = SessionPlace(self.sessions.clone());
        reply.accept().await;
        let id = channel.id();
        let handle = session.handle();
        let task = super::session::run(
            self.app.clone(),
            user,
            self.peer,
            channel,
            handle.clone(),
            self.shutdown.clone(),
        );
        let span = self.span.clone();
        tokio::spawn(
            async move {
                let _place = place;
                // A panic ends this session only: report it to the client and close the channel.
                if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!("session panicked: {what}");
                    let _ = handle
                        .extended_data(
                            id,
                            1,
                            &b"rosewire: internal error; this session is closed\r\n"[..],
                        )
                        .await;
                    let _ = handle.exit_status_request(id, 1).await;
                    let _ = handle.eof(id).await;
                    let _ = handle.close(id).await;
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            tracing::info!("sftp subsystem opened");
            session.channel_success(channel)
        } else {
            tracing::info!(subsystem = name, "unknown subsystem refused");
            session.channel_failure(channel)
        }
    }

    async fn window_change_request(
        &mut self,
        _channel: ChannelId,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel's task receives the new size as a ChannelMsg::WindowChange.
        Ok(())
    }
}
