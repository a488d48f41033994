#!/bin/sh
# tokenmeter's Claude Code hook and status line, installed by `tokenmeter claude-code install`.
#
#   sh tokenmeter-claude-code.sh hook|statusline URL
#
# Claude Code runs it in the session's working directory with its JSON on stdin (session_id,
# ...). It posts that JSON as it is, with what git says of this directory (working tree, branch,
# the branch's merge ref, origin's URL without credentials), to URL/api/v1/claude-code/context;
# tokenmeter stores the session's work context and answers the status line, which `statusline`
# prints. `hook` prints nothing (a SessionStart hook's output would become model context).
# POSIX sh, git and curl only, at most 2 s of network, and it always exits 0: tokenmeter being
# down never breaks Claude Code. TOKENMETER_CONTEXT_TOKEN, when set, is sent as a bearer token.
mode=$1
url=${2%/}
nl='
'
worktree='' branch='' merge='' remote=''
top=$(git rev-parse --show-toplevel --abbrev-ref HEAD 2>/dev/null </dev/null)
case $top in
*"$nl"*)
    worktree=${top%"$nl"*}
    branch=${top##*"$nl"}
    ;;
esac
if [ "$branch" = HEAD ]; then # detached (no branch), or a branch with no commit yet
    branch=$(git symbolic-ref --short -q HEAD 2>/dev/null </dev/null)
fi
if [ -n "$branch" ]; then
    merge=$(git config --get "branch.$branch.merge" 2>/dev/null </dev/null)
fi
if [ -n "$worktree" ]; then
    remote=$(git config --get remote.origin.url 2>/dev/null </dev/null)
fi
case $remote in
*://*) # https://user:token@host/owner/name: never send the credentials
    scheme=${remote%%://*}
    rest=${remote#*://}
    authority=${rest%%/*}
    remote=$scheme://${authority##*@}${rest#"$authority"}
    ;;
esac
set -- -s -m 2 -w "$nl%{http_code}" --data-urlencode claude@- \
    --data-urlencode "worktree=$worktree" --data-urlencode "branch=$branch" \
    --data-urlencode "merge=$merge" --data-urlencode "remote=$remote"
if [ -n "${TOKENMETER_CONTEXT_TOKEN:-}" ]; then
    set -- "$@" -H "authorization: Bearer $TOKENMETER_CONTEXT_TOKEN"
fi
answer=$(curl "$@" "$url/api/v1/claude-code/context" 2>/dev/null)
[ "$mode" = statusline ] || exit 0
code=${answer##*"$nl"}
line=${answer%"$nl"*}
case $code in
200) printf '%s\n' "${line%"$nl"}" ;;
000 | '') echo "tokenmeter: not reachable" ;;
*) echo "tokenmeter: refused (HTTP $code)" ;;
esac
exit 0
