//! `/search QUERY [--json] [--page N]` and `/more`: find shared files.

use rosewire_shell::query::Query;
use serde_json::json;

use super::{json_line, store_failed, CmdError, Ctx, Output};
use crate::catalog::Hit;
pub use crate::catalog::PAGE_SIZE;
use crate::library::human_size;
/// The deepest page a search may ask for (bounds the work of OFFSET).
pub const MAX_PAGE: usize = 100;

/// The last search of a session: `/more` continues it, `/get N` picks from it.
#[derive(Debug)]
pub struct LastSearch {
    query: Query,
    page: usize,
    /// Results shown so far, numbered from 1 across pages; `None` for those of pages before
    /// the first one shown.
    pub hits: Vec<Option<Hit>>,
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    query: Query,
    json: bool,
    page: usize,
) -> Result<Output, CmdError> {
    if page > MAX_PAGE {
        return Err(CmdError::Usage(format!(
            "/search: page {page} is beyond the last page allowed ({MAX_PAGE}); narrow the query"
        )));
    }
    let hits = fetch(ctx, &query, page).await?;
    let first_number = (page - 1) * PAGE_SIZE + 1;
    let out = render(ctx, &hits, first_number, json);
    ctx.session.more = Some(super::more::Continuation::Search);
    ctx.session.last_search = Some(LastSearch {
        query,
        page,
        hits: placeholders(first_number - 1)
            .chain(hits.into_iter().map(Some))
            .collect(),
    });
    Ok(out)
}

pub async fn more(ctx: &mut Ctx<'_>, json: bool) -> Result<Output, CmdError> {
    let Some(last) = ctx.session.last_search.take() else {
        return Err(CmdError::Failed(
            "no search to continue; use /search first".into(),
        ));
    };
    let page = last.page + 1;
    if page > MAX_PAGE {
        ctx.session.last_search = Some(last);
        return Err(CmdError::Failed(format!(
            "no more than {MAX_PAGE} pages; narrow the query"
        )));
    }
    let result = fetch(ctx, &last.query, page).await;
    let hits = match result {
        Ok(hits) => hits,
        Err(e) => {
            ctx.session.last_search = Some(last);
            return Err(e);
        }
    };
    let first_number = last.hits.len() + 1;
    let out = render(ctx, &hits, first_number, json);
    let mut all = last.hits;
    all.extend(hits.into_iter().map(Some));
    ctx.session.last_search = Some(LastSearch {
        query: last.query,
        page,
        hits: all,
    });
    Ok(out)
}

/// Results before the first page shown (a search that starts at `--page 3`), which `/get N`
/// cannot pick; kept as empty entries so numbers stay aligned.
fn placeholders(count: usize) -> impl Iterator<Item = Option<Hit>> {
    std::iter::repeat_n(None, count)
}

async fn fetch(ctx: &Ctx<'_>, query: &Query, page: usize) -> Result<Vec<Hit>, CmdError> {
    ctx.app
        .catalog
        .search(query, page)
        .await
        .map_err(store_failed)
}

fn render(ctx: &Ctx<'_>, hits: &[Hit], first_number: usize, json: bool) -> Output {
    if json {
        return Output::lines(
            hits.iter()
                .map(|h| {
                    json_line(json!({
                        "id": h.file.id,
                        "name": h.file.name,
                        "size": h.file.size,
                        "owner": h.file.owner.to_string(),
                    }))
                })
                .collect(),
        );
    }
    if hits.is_empty() {
        let what = if first_number == 1 {
            "no shared file matches"
        } else {
            "no more results"
        };
        return Output::lines(vec![what.to_owned()]);
    }
    let mut lines: Vec<String> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let copies = if h.copies > 1 {
                format!(" (+{} copies)", h.copies - 1)
            } else {
                String::new()
            };
            format!(
                "{:>3}. {}  {:>10}  {}  {}{copies}",
                first_number + i,
                &h.file.id[..super::library::SHORT_ID.min(h.file.id.len())],
                human_size(h.file.size),
                h.file.name,
                h.file.owner,
            )
        })
        .collect();
    if hits.len() == PAGE_SIZE {
        lines.push(ctx.more_hint("results", first_number / PAGE_SIZE + 2));
    }
    if !ctx.exec {
        // In exec form each command is its own session: there is no result N to get.
        lines.push("/get N downloads result N".to_owned());
    }
    Output::lines(lines)
}
