//! Dropping root after the listeners are bound (`--user` / `--group`).
//!
//! The names are looked up before anything starts, so that a typo fails at
//! once. The switch itself happens after every listening socket (and the
//! metrics endpoint) is bound and the users file is read, in the order that
//! cannot be undone: supplementary groups, then the group, then the user.
//! glibc applies each of these calls to every thread of the process (the
//! runtime's threads already exist), and the result is checked afterwards:
//! the ids are the asked-for ones and root cannot be regained.

use std::ffi::CString;

use nix::unistd::{self, Gid, Group, Uid, User};

/// Why the privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("no such user `{0}` (--user / user): refusing to start")]
    UnknownUser(String),
    #[error("no such group `{0}` (--group / group): refusing to start")]
    UnknownGroup(String),
    #[error("cannot look up {what} `{name}`: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        source: nix::Error,
    },
    #[error(
        "switching to {target} needs root, but sixsocks runs as uid {uid}; start it as \
         root or leave out --user/--group (user/group)"
    )]
    NotRoot { target: String, uid: u32 },
    #[error("cannot switch to {target}: {step} failed: {source}")]
    Step {
        target: String,
        step: &'static str,
        source: nix::Error,
    },
    #[error("switched to {target}, but {what}: refusing to run")]
    Check { target: String, what: String },
}

/// The user and group to switch to, looked up.
pub struct Switch {
    user: Option<User>,
    group: Option<Group>,
}

impl Switch {
    /// Look the names up; `None` when neither is given.
    pub fn lookup(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<Switch>, PrivilegeError> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let user = match user {
            Some(name) => Some(
                User::from_name(name)
                    .map_err(|source| PrivilegeError::Lookup {
                        what: "user",
                        name: name.to_string(),
                        source,
                    })?
                    .ok_or_else(|| PrivilegeError::UnknownUser(name.to_string()))?,
            ),
            None => None,
        };
        let group = match group {
            Some(name) => Some(
                Group::from_name(name)
                    .map_err(|source| PrivilegeError::Lookup {
                        what: "group",
                        name: name.to_string(),
                        source,
                    })?
                    .ok_or_else(|| PrivilegeError::UnknownGroup(name.to_string()))?,
            ),
            None => None,
        };
        Ok(Some(Switch { user, group }))
    }

    fn gid(&self) -> Gid {
        match (&self.group, &self.user) {
            (Some(g), _) => g.gid,
            (None, Some(u)) => u.gid,
            (None, None) => unistd::getegid(),
        }
    }

    fn describe(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("user {} (uid {})", u.name, u.uid));
        let group = match (&self.group, &self.user) {
            (Some(g), _) => Some(format!("group {} (gid {})", g.name, g.gid)),
            (None, Some(u)) => Some(format!("gid {}", u.gid)),
            (None, None) => None,
        };
        [user, group]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Switch. Without root this is an error, unless the process already
    /// runs as the asked-for user and group (nothing to switch).
    pub fn apply(&self) -> Result<(), PrivilegeError> {
        let target = self.describe();
        let gid = self.gid();
        let uid = self.user.as_ref().map(|u| u.uid);
        let euid = unistd::geteuid();
        if !euid.is_root() {
            if uid.is_none_or(|u| u == euid) && gid == unistd::getegid() {
                tracing::info!(to = %target, "already running as the configured user and group");
                return Ok(());
            }
            return Err(PrivilegeError::NotRoot {
                target,
                uid: euid.as_raw(),
            });
        }
        let step = |step: &'static str| {
            let target = target.clone();
            move |source| PrivilegeError::Step {
                target,
                step,
                source,
            }
        };
        // Supplementary groups: the user's own, as login and systemd's
        // User= give them; with only a group, that group alone.
        match &self.user {
            Some(u) => {
                let name = CString::new(u.name.as_bytes()).map_err(|_| PrivilegeError::Check {
                    target: target.clone(),
                    what: "the user name contains a NUL byte".into(),
                })?;
                unistd::initgroups(&name, gid).map_err(step("initgroups"))?;
            }
            None => unistd::setgroups(&[gid]).map_err(step("setgroups"))?,
        }
        unistd::setgid(gid).map_err(step("setgid"))?;
        if let Some(uid) = uid {
            unistd::setuid(uid).map_err(step("setuid"))?;
        }
        self.check(&target, uid, gid)?;
        let groups = unistd::getgroups()
            .map(|g| g.iter().map(|g| g.as_raw()).collect::<Vec<_>>())
            .unwrap_or_default();
        match uid {
            Some(uid) => tracing::info!(
                to = %target,
                uid = uid.as_raw(),
                gid = gid.as_raw(),
                ?groups,
                "dropped root privileges"
            ),
            None => tracing::warn!(
                to = %target,
                gid = gid.as_raw(),
                ?groups,
                "switched group only: still running as root (uid 0); set --user to drop root"
            ),
        }
        Ok(())
    }

    /// The ids are the asked-for ones, and (when the user changed) root
    /// cannot be regained.
    fn check(&self, target: &str, uid: Option<Uid>, gid: Gid) -> Result<(), PrivilegeError> {
        let fail = |what: String| PrivilegeError::Check {
            target: target.to_string(),
            what,
        };
        if unistd::getgid() != gid || unistd::getegid() != gid {
            return Err(fail(format!(
                "the group ids are {}/{}",
                unistd::getgid(),
                unistd::getegid()
            )));
        }
        if let Some(uid) = uid {
            if unistd::getuid() != uid || unistd::geteuid() != uid {
                return Err(fail(format!(
                    "the user ids are {}/{}",
                    unistd::getuid(),
                    unistd::geteuid()
                )));
            }
            if !uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
                return Err(fail("root can be regained".into()));
            }
        }
        Ok(())
    }
}
