# shellcheck shell=bash disable=SC2034
# Sourced by build.sh and ../fhir-up.sh: picks the Java used to build and run the FHIR server.
#
# Order: $FHIR_JAVA_HOME (only that one, if set) ; else the first Java 17 among $JAVA_HOME,
# /usr/lib/jvm/*17*, the `java` on PATH ; else any Java >= 17 found there (with a warning).
# HAPI FHIR 8.8 targets Java 17; /usr/lib/jvm may also hold a newer JDK (e.g. Temurin 25), which is
# only a fallback.
# Sets: FHIR_JAVA (the java binary), FHIR_JAVA_HOME_USED, FHIR_JAVA_MAJOR. Returns 1 with a message on stderr.

fhir_java_major() { # $1 = java binary -> prints the major version (8, 11, 17, 25 ...) or nothing
	local v
	v="$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')" || return 0
	[[ -z "$v" ]] && return 0
	if [[ "$v" == 1.* ]]; then v="${v#1.}"; fi
	printf '%s\n' "${v%%[.+-]*}"
}

fhir_find_java() {
	local homes=() h j major found_any="" fallback="" fallback_major=""
	if [[ -n "${FHIR_JAVA_HOME:-}" ]]; then
		homes=("$FHIR_JAVA_HOME")
	else
		[[ -n "${JAVA_HOME:-}" ]] && homes+=("$JAVA_HOME")
		for h in /usr/lib/jvm/java-17-openjdk* /usr/lib/jvm/temurin-17* /usr/lib/jvm/*17*; do
			[[ -d "$h" ]] && homes+=("$h")
		done
		if j="$(command -v java 2>/dev/null)"; then
			j="$(readlink -f "$j")"
			homes+=("$(dirname "$(dirname "$j")")")
		fi
		for h in /usr/lib/jvm/*; do
			[[ -d "$h" ]] && homes+=("$h")
		done
	fi
	for h in "${homes[@]}"; do
		j="$h/bin/java"
		[[ -x "$j" ]] || continue
		major="$(fhir_java_major "$j")"
		[[ -z "$major" ]] && continue
		found_any+=" $h (Java $major)"
		if [[ "$major" == 17 ]]; then
			FHIR_JAVA="$j"; FHIR_JAVA_HOME_USED="$h"; FHIR_JAVA_MAJOR="$major"
			return 0
		fi
		if [[ -z "$fallback" && "$major" =~ ^[0-9]+$ && "$major" -gt 17 ]]; then
			fallback="$h"; fallback_major="$major"
		fi
	done
	if [[ -n "$fallback" ]]; then
		echo "warning: no Java 17 found; using Java $fallback_major at $fallback (HAPI FHIR 8.8 is built and tested on 17)" >&2
		FHIR_JAVA="$fallback/bin/java"; FHIR_JAVA_HOME_USED="$fallback"; FHIR_JAVA_MAJOR="$fallback_major"
		return 0
	fi
	if [[ -n "${FHIR_JAVA_HOME:-}" ]]; then
		echo "error: FHIR_JAVA_HOME=$FHIR_JAVA_HOME is not a Java 17+ JDK/JRE${found_any:+ (found:$found_any)}" >&2
	elif [[ -n "$found_any" ]]; then
		echo "error: Java 17 or newer is required; found only:$found_any. Install one (apt-get install openjdk-17-jdk-headless) or set FHIR_JAVA_HOME." >&2
	else
		echo "error: java not found. Install Java 17 (apt-get install openjdk-17-jdk-headless) or set FHIR_JAVA_HOME." >&2
	fi
	return 1
}
