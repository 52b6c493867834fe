# Where the shared SoDTestCase files are, with the rule every test tier uses
# (the Rust one is tests/common/scenarios.rs): they live beside the repository
# in ../shared/scenarios; in CI (CI set to anything but "", "0" or "false") the
# folder must be there, elsewhere a tier without it is skipped.
#
#   source tests/lib/shared-scenarios.sh
#   if dir="$(shared_scenarios_dir "$ROOT")"; then ...; fi
#
# shared_scenarios_dir ROOT: prints the folder and succeeds; when it is
# missing, says so on stderr and fails: status 2 in CI (the caller must
# fail), 1 elsewhere (the caller may skip).
shared_scenarios_dir() {
  local dir="$1/../shared/scenarios"
  if [[ -d "$dir" ]]; then
    (cd "$dir" && pwd)
    return 0
  fi
  if [[ -n "${CI:-}" && "$CI" != 0 && "$CI" != false ]]; then
    echo "error: $dir is missing: the shared scenarios cannot run (CI=$CI)" >&2
    return 2
  fi
  echo "SKIPPED: $dir is missing: the shared scenarios were not run" >&2
  return 1
}
