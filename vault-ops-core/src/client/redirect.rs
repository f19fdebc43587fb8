//! The redirect policy: at most one redirect, never from https to http, and only to a
//! configured address or the host that redirected (the token goes along).

use url::Url;

use crate::http::redirect_target;

/// A URL's host and port (the port the scheme implies when none is written).
pub(crate) type Origin = (String, Option<u16>);

pub(crate) fn origin(u: &Url) -> Origin {
    (
        u.host_str().unwrap_or_default().to_ascii_lowercase(),
        u.port_or_known_default(),
    )
}

pub(crate) fn redirect_policy(allowed: Vec<Origin>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match check_redirect(attempt.previous(), attempt.url(), &allowed) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

/// Whether a redirect to `next` may be followed, given the URLs visited so far (the first is
/// the request's own) and the configured addresses' origins: at most one redirect (a standby
/// pointing at the active node), never from https to anything else, and only to a configured
/// address or the host that redirected.
///
/// A redirect elsewhere is refused rather than followed without the token: the request
/// carries `X-Vault-Token`, which (unlike `Authorization`) an HTTP client keeps on a
/// redirect, and a token must go to no host the user did not name. A standby sends 307 only
/// when asked not to forward (`X-Vault-No-Request-Forwarding`) or when it cannot forward;
/// listing every node with [`ClientBuilder::addresses`](crate::ClientBuilder::addresses) lets the client follow it.
///
/// Each refusal says where the redirect pointed (without credentials, query or fragment).
fn check_redirect(previous: &[Url], next: &Url, allowed: &[Origin]) -> Result<(), String> {
    if previous.len() > 1 {
        return Err(format!(
            "Vault redirected more than once (again to {})",
            redirect_target(next.as_str())
        ));
    }
    let from_https = previous.last().is_some_and(|u| u.scheme() == "https");
    if from_https && next.scheme() != "https" {
        return Err(format!(
            "refusing a redirect from https to http (to {})",
            redirect_target(next.as_str())
        ));
    }
    let target = origin(next);
    let same_host = previous.last().is_some_and(|u| origin(u) == target);
    if !same_host && !allowed.contains(&target) {
        return Err(format!(
            "refusing a redirect to {}, which is not one of the configured \
             addresses (the token would go along); list every node with \
             ClientBuilder::addresses",
            redirect_target(next.as_str())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn redirects() {
        let https = u("https://vault-0:8200/v1/secret/data/a");
        let http = u("http://vault-0:8200/v1/secret/data/a");
        let allowed: Vec<Origin> = ["https://vault-0:8200/", "https://VAULT-1:8200/"]
            .iter()
            .map(|a| origin(&u(a)))
            .collect();
        let check = |prev: &[Url], next: &str| check_redirect(prev, &u(next), &allowed);
        assert_eq!(
            check(std::slice::from_ref(&https), "https://vault-1:8200/v1/x"),
            Ok(())
        );
        assert_eq!(
            check(std::slice::from_ref(&http), "http://vault-1:8200/v1/x"),
            Ok(())
        );
        assert_eq!(
            check(std::slice::from_ref(&http), "https://vault-1:8200/v1/x"),
            Ok(())
        );
        assert_eq!(
            check(
                std::slice::from_ref(&https),
                "http://vault-1:8200/v1/x?t=s.SECRET"
            ),
            Err("refusing a redirect from https to http (to http://vault-1:8200/v1/x)".to_string())
        );
        assert_eq!(
            check(&[http.clone(), https.clone()], "https://vault-2:8200/v1/x"),
            Err("Vault redirected more than once (again to https://vault-2:8200/v1/x)".to_string())
        );
        // The same host (another path) is fine; another host, or another port, is not.
        assert_eq!(
            check(
                std::slice::from_ref(&https),
                "https://vault-0:8200/v1/other"
            ),
            Ok(())
        );
        let other = u("https://vault-9:8300/v1/a");
        assert_eq!(
            check(std::slice::from_ref(&other), "https://vault-9:8300/v1/b"),
            Ok(())
        );
        for (foreign, shown) in [
            ("https://evil.example/v1/x", "https://evil.example/v1/x"),
            ("https://vault-1:9999/v1/x", "https://vault-1:9999/v1/x"),
            (
                "https://u:pw@vault-0.evil.example:8200/v1/x?token=s.SECRET#f",
                "https://vault-0.evil.example:8200/v1/x",
            ),
        ] {
            let e = check(std::slice::from_ref(&https), foreign).unwrap_err();
            assert!(e.contains("not one of the configured addresses"), "{e}");
            assert!(e.contains(&format!("redirect to {shown}, ")), "{e}");
            assert!(!e.contains("SECRET") && !e.contains("pw"), "{e}");
        }
    }
}
