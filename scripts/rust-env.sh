# Sourced (bash) by scripts/setup and scripts/test, from the repository root:
# find the Rust toolchain also under sudo, and give target/ back afterwards.
#
# `sudo scripts/...` resets PATH (secure_path), so a rustup installed by the
# invoking user in ~/.cargo/bin is not found, and HOME becomes root's, so the
# rustup proxies would look in /root/.rustup. The toolchain version itself is
# pinned by rust-toolchain.toml, which rustup reads in the repository root.

# Puts cargo in PATH, or exits with one message saying what to do.
#   1. under sudo: the invoking user's rustup (~USER/.cargo/bin, RUSTUP_HOME=~USER/.rustup)
#   2. cargo already in PATH (root's login PATH, or sudo env PATH="$PATH" ...)
#   3. the running user's own rustup: $CARGO_HOME/bin or ~/.cargo/bin (root without sudo)
xcap_rust_env() {
    local me=$1 user_home=""
    if [[ $EUID == 0 && -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    fi
    if [[ -n $user_home && -x $user_home/.cargo/bin/cargo ]]; then
        export PATH="$user_home/.cargo/bin:$PATH"
        if [[ -d $user_home/.rustup ]]; then export RUSTUP_HOME="$user_home/.rustup"; fi
        # Read the user's toolchains, write nothing of theirs as root: cargo's
        # registry and git caches stay in root's CARGO_HOME (root-owned files in
        # ~USER/.cargo would break the user's own builds), and rustup must not
        # install a missing toolchain or component into ~USER/.rustup as root.
        export CARGO_HOME="$HOME/.cargo" RUSTUP_AUTO_INSTALL=0
    elif ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        echo "$me: cargo not found (looked in ${user_home:+$user_home/.cargo/bin, }PATH, ${CARGO_HOME:-$HOME/.cargo}/bin):" \
            "install Rust with rustup (https://rustup.rs), as your own user if you use sudo" >&2
        exit 1
    fi
    # Through the rustup proxy this also selects the pinned toolchain.
    if ! cargo --version >/dev/null; then
        local pin
        pin=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
        echo "$me: $(command -v cargo) cannot run the toolchain pinned in rust-toolchain.toml;" \
            "install it as the user who owns ${RUSTUP_HOME:-~/.rustup} (without sudo):" \
            "rustup toolchain install $pin --profile minimal --component clippy,rustfmt" >&2
        exit 1
    fi
    echo "$me: $(cargo --version) from $(command -v cargo)"
}

# Files that root builds in a user's checkout would stop that user from
# building later without sudo (cargo cannot rewrite root-owned files in
# target/). So, run as `trap xcap_on_exit EXIT`: under sudo, when the checkout
# (or an explicit CARGO_TARGET_DIR) belongs to the invoking user, hand the
# target directory back to them. Root's own checkouts are left alone.
xcap_on_exit() {
    xcap_stop_children
    [[ $EUID == 0 && -n ${SUDO_UID:-} && -n ${SUDO_GID:-} && $SUDO_UID != 0 ]] || return 0
    local t=target owner_of=.
    if [[ -n ${CARGO_TARGET_DIR:-} ]]; then t=$CARGO_TARGET_DIR owner_of=$CARGO_TARGET_DIR; fi
    if [[ -d $t && $(stat -c %u "$owner_of") == "$SUDO_UID" ]]; then
        chown -R -h "$SUDO_UID:$SUDO_GID" "$t"
    fi
}

# Killed by a signal (sudo passes on SIGTERM), bash exits without waiting for
# the command it was running: `timeout ... cargo test` (timeout runs it in a
# process group of its own) would go on building and testing as root, and
# write root-owned files after the chown. Stop those children (timeout passes
# the signal to its whole group) and wait for them, at most 30 s.
xcap_stop_children() {
    local pid pg targets=() i
    for pid in $(pgrep -P $$ || true); do
        pg=$(ps -o pgid= -p "$pid" | tr -d ' ') || continue
        if [[ $pg == "$pid" ]]; then targets+=("-$pg"); else targets+=("$pid"); fi
    done
    [[ ${#targets[@]} -gt 0 ]] || return 0
    kill -TERM -- "${targets[@]}" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 -- "${targets[@]}" 2>/dev/null || return 0
        sleep 0.2
    done
}
