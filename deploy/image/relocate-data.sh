#!/bin/sh
# Moves the data a site may replace out of the installed package into DATA_ROOT and leaves symlinks
# behind, so that a volume mounted on DATA_ROOT/terminology, DATA_ROOT/mappings or DATA_ROOT/ruleset
# is what the module reads (it reads its data through importlib.resources, i.e. from the package):
#
#   PACKAGE_DIR/terminology              -> DATA_ROOT/terminology            (FHIR ValueSets, CodeSystems)
#   PACKAGE_DIR/mappings/units.json      -> DATA_ROOT/mappings/units.json    (unit table)
#   PACKAGE_DIR/mappings/conceptmaps     -> DATA_ROOT/mappings/conceptmaps   (shipped ConceptMaps)
#   PACKAGE_DIR/ruleset/<name>.json      -> DATA_ROOT/ruleset/<name>.json    (each rule set file)
#
# A mounted folder replaces the shipped one whole: it must hold every file the shipped one holds.
# Site ConceptMaps that only add codes go to RLS_SCREEN_CONCEPTMAP_DIR instead (no replacement).
# Usage: relocate-data.sh PACKAGE_DIR DATA_ROOT   (PACKAGE_DIR: the installed rls_screen directory)
set -eu
[ "$#" -eq 2 ] || { echo "usage: relocate-data.sh PACKAGE_DIR DATA_ROOT" >&2; exit 2; }
package="$1"
data="$2"
[ -f "$package/__init__.py" ] && [ -d "$package/terminology" ] || { echo "relocate-data: $package is not the installed rls_screen package" >&2; exit 2; }
mkdir -p "$data/mappings" "$data/ruleset"

move() { # $1 = path inside the package, $2 = its place under DATA_ROOT
	mv "$package/$1" "$data/$2"
	ln -s "$data/$2" "$package/$1"
}
move terminology terminology
move mappings/units.json mappings/units.json
move mappings/conceptmaps mappings/conceptmaps
for file in "$package"/ruleset/*.json; do
	name="$(basename "$file")"
	move "ruleset/$name" "ruleset/$name"
done
echo "relocate-data: site-replaceable data is under $data"
