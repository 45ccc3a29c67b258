//! The SFTP subsystem: each user's virtual root with `library/` and `downloads/`.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::app::{App, User};

/// Serves one SFTP session on `stream` until the client closes it.
pub async fn serve<S>(app: App, user: User, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (app, user, stream);
}
