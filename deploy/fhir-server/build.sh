#!/usr/bin/env bash
# Builds target/fhir-server.jar, the runnable local HAPI FHIR server (Spring Boot fat jar).
# Skips the build when the jar is newer than pom.xml and everything under src/ (pass --force to rebuild).
# Maven uses the ~/.m2 cache; FHIR_MVN_OFFLINE=1 adds -o (no network at all once the cache is warm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAR="$HERE/target/fhir-server.jar"
FORCE=0
for arg in "$@"; do
	case "$arg" in
		--force) FORCE=1 ;;
		-h|--help) sed -n '2,4p' "$0"; exit 0 ;;
		*) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
	esac
done

if [[ "$FORCE" == 0 && -f "$JAR" ]] && [[ -z "$(find "$HERE/pom.xml" "$HERE/src" -newer "$JAR" -print -quit)" ]]; then
	echo "fhir-server.jar is up to date ($JAR)"
	exit 0
fi

# shellcheck source-path=SCRIPTDIR
source "$HERE/java-env.sh"
fhir_find_java || exit 1

if ! command -v mvn >/dev/null 2>&1; then
	echo "error: mvn (Apache Maven 3.8+) not found but a build is needed: install it (apt-get install maven)" >&2
	exit 1
fi

mvn_args=(-B -q -Dstyle.color=never -DskipTests -f "$HERE/pom.xml")
[[ "${FHIR_MVN_OFFLINE:-0}" == 1 ]] && mvn_args+=(-o)

echo "building fhir-server.jar with Maven (Java $FHIR_JAVA_MAJOR at $FHIR_JAVA_HOME_USED) ..."
start=$SECONDS
# (Debian's Maven prints colour-reset escapes even in batch mode: strip them)
set +e
JAVA_HOME="$FHIR_JAVA_HOME_USED" mvn "${mvn_args[@]}" package 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g'
rc=${PIPESTATUS[0]}
set -e
if [[ "$rc" != 0 ]]; then
	echo "error: Maven build of deploy/fhir-server failed (see the [ERROR] lines above)" >&2
	exit 1
fi
if [[ ! -f "$JAR" ]]; then
	echo "error: Maven finished but $JAR is missing" >&2
	exit 1
fi
touch "$JAR"
echo "built $JAR in $((SECONDS - start))s"
