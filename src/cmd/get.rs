//! `/get ID|N`: choose a shared file to download. Delivery is the session's business:
//! into `downloads/` in a shell, to stdout in exec form.

use rosewire_shell::command::GetTarget;

use super::{store_failed, CmdError, Ctx, Output};
use crate::catalog::CatalogFile;
use crate::library::human_size;
use crate::transfer::Download;

/// Candidates listed when an id prefix is ambiguous.
const MAX_CANDIDATES: usize = 10;
/// Shared copies of one content looked at for a download (here first, then its holders).
const MAX_COPIES: usize = 64;

pub async fn run(ctx: &Ctx<'_>, target: GetTarget, offset: u64) -> Result<Output, CmdError> {
    if offset > 0 && !ctx.exec {
        return Err(CmdError::Usage(format!(
            "--offset {offset} is for `ssh host get ID --offset N >> file`; in the shell /get \
             resumes an interrupted download by itself"
        )));
    }
    let download = match target {
        GetTarget::Number(n) => by_number(ctx, n)?,
        GetTarget::Id(prefix) => by_id(ctx, prefix).await?,
    };
    let download = with_copies(ctx, &download).await?;
    if offset > download.size {
        return Err(CmdError::Failed(format!(
            "--offset {offset} is past the end of {} ({} bytes)",
            download.name, download.size
        )));
    }
    Ok(Output {
        download: Some(download),
        offset,
        ..Output::default()
    })
}

/// `chosen` as a download that knows every shared copy of its content: read here if a copy is
/// here, else from any instance that holds it (`Download::of_copies`).
async fn with_copies(ctx: &Ctx<'_>, chosen: &CatalogFile) -> Result<Download, CmdError> {
    let copies = ctx
        .app
        .catalog
        .copies(&chosen.id, MAX_COPIES)
        .await
        .map_err(store_failed)?;
    Ok(Download::of_copies(chosen, &copies))
}

fn by_number(ctx: &Ctx<'_>, n: usize) -> Result<CatalogFile, CmdError> {
    let Some(last) = &ctx.session.last_search else {
        return Err(CmdError::Failed(format!(
            "no search results to pick {n} from; /search first, or /get ID"
        )));
    };
    match last.hits.get(n - 1) {
        Some(Some(hit)) => Ok(hit.file.clone()),
        _ => Err(CmdError::Failed(format!(
            "there is no result {n}; the last search showed {}",
            last.hits.len()
        ))),
    }
}

async fn by_id(ctx: &Ctx<'_>, prefix: String) -> Result<CatalogFile, CmdError> {
    let found = ctx
        .app
        .catalog
        .resolve_id(&prefix, MAX_CANDIDATES * 4)
        .await
        .map_err(store_failed)?;
    match found.as_slice() {
        [] => Err(CmdError::Failed(format!("no shared file has id {prefix}"))),
        [one] => Ok(one.clone()),
        many => {
            let list: Vec<String> = many
                .iter()
                .take(MAX_CANDIDATES)
                .map(|f| format!("  {}  {}  {}", f.id, human_size(f.size), f.name))
                .collect();
            Err(CmdError::Failed(format!(
                "id {prefix} is ambiguous; it starts {} files' ids:\n{}",
                many.len(),
                list.join("\n")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{App, User};
    use crate::cmd::{CmdError, SessionState};
    use crate::store::files::FileIdentity;
    use crate::store::{users, Store};

    /// An app over a fresh database in `dir`, with alice sharing files of the given hashes.
    fn app_with_shared(
        dir: &std::path::Path,
        hashes: &[&'static str],
    ) -> (App, User, crate::store::StoreThread) {
        let (db, thread) = Store::open(&dir.join("db")).unwrap();
        let config = crate::config::Config {
            data_dir: dir.to_owned(),
            ..crate::config::Config::default()
        };
        let key = std::sync::Arc::new(crate::fed::identity::InstanceKey::generate(
            &config.base_url(),
        ));
        let app = App::new(config, db.clone(), key).unwrap();
        let user = User {
            id: 1,
            nick: "alice".into(),
            fingerprint: "SHA256:a".into(),
        };
        let hashes = hashes.to_vec();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // Alice signs up (the login path, outside the commands' reach).
            db.call(|conn| users::authenticate(conn, "alice", "SHA256:a", "k", 0))
                .await?;
            let identity = FileIdentity {
                dev: 0,
                ino: 0,
                size: 1,
                mtime_ns: 0,
            };
            for (i, hash) in hashes.iter().enumerate() {
                let path = format!("f{i}.bin");
                app.library
                    .file_added(1, &path, 1, hash, 0, identity)
                    .await?;
                app.catalog.set_shared(1, vec![path], true).await?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .unwrap();
        (app, user, thread)
    }

    fn get(app: &App, user: &User, target: GetTarget) -> Result<Output, CmdError> {
        let mut session = SessionState::default();
        let ctx = Ctx {
            app,
            user,
            session: &mut session,
            exec: true,
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run(&ctx, target, 0))
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates_and_a_unique_one_picks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = "deadbeef00000000000000000000000000000000000000000000000000000001";
        let b = "deadbeef00000000000000000000000000000000000000000000000000000002";
        let c = "cafef00d00000000000000000000000000000000000000000000000000000003";
        let (app, user, _thread) = app_with_shared(dir.path(), &[a, b, c]);
        match get(&app, &user, GetTarget::Id("deadbeef".into())) {
            Err(CmdError::Failed(m)) => {
                assert!(
                    m.contains("ambiguous") && m.contains(a) && m.contains(b),
                    "{m}"
                );
                assert!(!m.contains(c), "{m}");
            }
            other => panic!("expected an ambiguity error, got {other:?}"),
        }
        let picked = get(&app, &user, GetTarget::Id("deadbeef0000".into()));
        assert!(
            matches!(picked, Err(CmdError::Failed(_))),
            "still ambiguous"
        );
        let one = get(&app, &user, GetTarget::Id("cafef00d".into())).unwrap();
        assert_eq!(one.download.map(|d| d.name), Some("f2.bin".into()));
        let none = get(&app, &user, GetTarget::Id("0123456789".into()));
        assert!(matches!(none, Err(CmdError::Failed(m)) if m.contains("0123456789")));
    }

    #[test]
    fn an_offset_is_for_exec_form_and_must_be_within_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = "cafef00d00000000000000000000000000000000000000000000000000000003";
        let (app, user, _thread) = app_with_shared(dir.path(), &[id]);
        let run_with = |exec: bool, offset: u64| {
            let mut session = SessionState::default();
            let ctx = Ctx {
                app: &app,
                user: &user,
                session: &mut session,
                exec,
            };
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(run(&ctx, GetTarget::Id("cafef00d".into()), offset))
        };
        match run_with(false, 1) {
            Err(CmdError::Usage(m)) => assert!(m.contains("--offset 1 is for"), "{m}"),
            other => panic!("expected a usage error, got {other:?}"),
        }
        assert_eq!(run_with(true, 1).unwrap().offset, 1);
        match run_with(true, 2) {
            Err(CmdError::Failed(m)) => {
                assert_eq!(m, "--offset 2 is past the end of f0.bin (1 bytes)")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_file_on_another_instance_is_fetched_from_its_owners_instance() {
        let dir = tempfile::tempdir().unwrap();
        let (app, user, _thread) = app_with_shared(dir.path(), &[]);
        let id = "beef".repeat(16);
        let file = crate::catalog::RemoteFile {
            id: id.clone(),
            name: "far.flac".into(),
            path: "music/far.flac".into(),
            size: 10,
        };
        let owner = rosewire_shell::Address::new("bob", "far.example");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(
                app.catalog
                    .apply_remote_share("far.example", owner, vec![file]),
            )
            .unwrap();
        let download = get(&app, &user, GetTarget::Id(id[..8].into()))
            .unwrap()
            .download
            .unwrap();
        assert_eq!(
            download,
            Download {
                source: crate::transfer::Source::Remote {
                    holders: vec!["far.example".into()]
                },
                name: "far.flac".into(),
                size: 10,
                hash: id,
            }
        );
    }
}
