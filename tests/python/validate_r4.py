"""Validates captured FHIR response bodies with an independent implementation: the
fhir.resources package's R4B models (structurally R4 for every resource type served here).

Usage: python tests/validate_r4.py DIR   — every *.json file in DIR is one response body.
Prints one line per invalid body and exits 1 if any; prints the count checked otherwise."""

import json
import pathlib
import sys

from fhir.resources.R4B import get_fhir_model_class


def main(folder: str) -> int:
    files = sorted(pathlib.Path(folder).glob("*.json"))
    failures = 0
    for path in files:
        body = json.loads(path.read_text())
        try:
            get_fhir_model_class(body["resourceType"]).model_validate(body)
        except Exception as error:  # noqa: BLE001 - report every kind of validation error
            failures += 1
            print(f"INVALID {path.name}: {str(error)[:400]}")
    print(f"validated {len(files)} FHIR response bodies, {failures} invalid")
    return 1 if failures or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
