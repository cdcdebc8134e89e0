//! Routes that carry their permission. Every route of the server is added through `Routes`,
//! whose only way to add a route takes its `Need` next to its handler, so a route without a
//! declared permission cannot be written; the permission table the auth layer checks
//! (`Permissions`) is built from the same calls that build the router.
//!
//! ```text
//! Routes::new()
//!     .get("/runs/get", Experiment(Read, Run("run_id")), get_run)
//!     .post("/runs/create", Experiment(Edit, FieldOrDefault("experiment_id")), create_run)
//! ```
//!
//! Routers of several files are combined with `merge`, mounted under a prefix with `nest` (the
//! declarations follow, with the prefix), and bounded with `body_limit`. `into_router` gives the
//! axum router; `permissions` gives the table.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::AppState;
use crate::access::Need;

/// `fn get(self, path, need, handler)` and the like: a route for one method, with its permission.
macro_rules! methods {
    ($($name:ident => $method:ident),* $(,)?) => {
        $(
            pub(crate) fn $name<H, T>(self, path: &str, need: Need, handler: H) -> Routes
            where
                H: Handler<T, AppState>,
                T: 'static,
            {
                self.on(Method::$method, MethodFilter::$method, path, need, handler)
            }
        )*
    };
}

/// Routes under construction, each with its permission.
#[derive(Default, Clone)]
pub(crate) struct Routes {
    routes: Vec<(String, MethodRouter<AppState>)>,
    declared: Vec<(Method, String, Need)>,
}

impl Routes {
    pub(crate) fn new() -> Routes {
        Routes::default()
    }

    methods! {
        get => GET,
        post => POST,
        put => PUT,
        patch => PATCH,
        delete => DELETE,
    }

    fn on<H, T>(mut self, method: Method, filter: MethodFilter, path: &str, need: Need, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.routes.push((path.to_owned(), on(filter, handler)));
        self.declared.push((method, path.to_owned(), need));
        self
    }

    /// The routes of both.
    pub(crate) fn merge(mut self, other: Routes) -> Routes {
        self.routes.extend(other.routes);
        self.declared.extend(other.declared);
        self
    }

    /// `other`'s routes under `prefix` (`/api/2.0/mlflow`).
    pub(crate) fn nest(mut self, prefix: &str, other: Routes) -> Routes {
        self.routes.extend(other.routes.into_iter().map(|(path, route)| (format!("{prefix}{path}"), route)));
        self.declared.extend(other.declared.into_iter().map(|(method, path, need)| (method, format!("{prefix}{path}"), need)));
        self
    }

    /// Bounds the request bodies of the routes added so far.
    pub(crate) fn body_limit(mut self, bytes: usize) -> Routes {
        self.routes = self.routes.into_iter().map(|(path, route)| (path, route.layer(DefaultBodyLimit::max(bytes)))).collect();
        self
    }

    /// The permission of every route.
    pub(crate) fn permissions(&self) -> Permissions {
        let mut table = HashMap::new();
        for (method, path, need) in &self.declared {
            let previous = table.insert((method.clone(), path.clone()), *need);
            assert!(previous.is_none(), "{method} {path} is declared twice");
        }
        Permissions(table)
    }

    /// The axum router: one method router per path, merged from every declaration of the path.
    pub(crate) fn into_router(self) -> Router<AppState> {
        let mut by_path: BTreeMap<String, MethodRouter<AppState>> = BTreeMap::new();
        for (path, route) in self.routes {
            let merged = match by_path.remove(&path) {
                Some(existing) => existing.merge(route),
                None => route,
            };
            by_path.insert(path, merged);
        }
        by_path.into_iter().fold(Router::new(), |router, (path, route)| router.route(&path, route))
    }
}

/// Every route's permission, by method and route pattern as mounted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Permissions(HashMap<(Method, String), Need>);

impl Permissions {
    /// The permission of the route `matched` (its pattern) for `method`; `None`: not declared.
    pub(crate) fn need(&self, method: &Method, matched: &str) -> Option<Need> {
        // axum answers HEAD with the GET handler: it needs what GET needs.
        let method = if method == Method::HEAD { &Method::GET } else { method };
        self.0.get(&(method.clone(), matched.to_owned())).copied()
    }

    /// Every (method, pattern, need), sorted by pattern and method.
    pub(crate) fn entries(&self) -> Vec<(Method, String, Need)> {
        let mut all: Vec<_> = self.0.iter().map(|((m, p), n)| (m.clone(), p.clone(), *n)).collect();
        all.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Need::{Admin, Public, SignedIn};

    async fn ok() -> &'static str {
        "ok"
    }

    #[test]
    fn declarations_follow_merges_and_prefixes() {
        let inner = Routes::new().get("/a", Public, ok).post("/a", Admin, ok);
        let routes = Routes::new().get("/x", SignedIn, ok).nest("/p", inner);
        let permissions = routes.permissions();
        assert_eq!(permissions.need(&Method::GET, "/p/a"), Some(Public));
        assert_eq!(permissions.need(&Method::POST, "/p/a"), Some(Admin));
        assert_eq!(permissions.need(&Method::GET, "/x"), Some(SignedIn));
        assert_eq!(permissions.need(&Method::HEAD, "/x"), Some(SignedIn), "HEAD is served by GET");
        // Anything not declared has no permission, so the auth layer refuses it.
        assert_eq!(permissions.need(&Method::GET, "/a"), None);
        assert_eq!(permissions.need(&Method::DELETE, "/p/a"), None);
        // One path with two methods is one route (axum would panic on a second `route`).
        let _router = routes.into_router();
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_route_declared_twice_is_refused() {
        let _ = Routes::new().get("/a", Public, ok).merge(Routes::new().get("/a", Admin, ok)).permissions();
    }
}
