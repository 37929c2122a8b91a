"""Build, store and verify fixed evaluation mask sets (see data/mask_sets.py).

    python tools/make_mask_set.py --protocol liu --size 256 --count 1200 --out masks/liu-256
    python tools/make_mask_set.py --verify masks/liu-256          # regenerate and compare byte for byte
    python tools/make_mask_set.py --record-references             # rewrite data/manifests/mask_sets.json

A stored set is a folder of PNG masks (white = hole) and a manifest.json with every mask's hole ratio,
bucket, border flag and SHA-256, and the set's SHA-256; ``zoo eval --masks FOLDER`` reads it back and checks
every file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.mask_sets import (  # noqa: E402
    PROTOCOLS,
    REFERENCE_FILE,
    protocol_set,
    record_references,
    stored_set,
    write_mask_set,
)
from zoo.errors import ZooError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=list(PROTOCOLS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--count", type=int, help="number of masks (default: the protocol's reference count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder to write the PNG masks and manifest.json into")
    p.add_argument("--verify", metavar="FOLDER", help="regenerate a stored protocol set and compare")
    p.add_argument("--record-references", action="store_true", help=f"rewrite {REFERENCE_FILE.name}")
    args = p.parse_args(argv)
    try:
        if args.record_references:
            table = record_references()
            REFERENCE_FILE.parent.mkdir(parents=True, exist_ok=True)
            REFERENCE_FILE.write_text(json.dumps(table, indent=1) + "\n")
            print(f"wrote {REFERENCE_FILE} ({len(table)} sets)")
        elif args.verify:
            stored = stored_set(args.verify)
            src = stored.source
            if src.get("protocol") not in PROTOCOLS:
                raise ZooError(f"{args.verify} is not a generated protocol set")
            fresh = protocol_set(src["protocol"], stored.height, len(stored), src["seed"])
            same = fresh.sha256 == stored.sha256
            verdict = "identical" if same else "DIFFERENT"
            print(f"{args.verify}: {verdict} (stored {stored.sha256[:16]}, regenerated {fresh.sha256[:16]})")
            return 0 if same else 1
        elif args.protocol and args.out:
            mask_set = protocol_set(args.protocol, args.size, args.count, args.seed)
            path = write_mask_set(mask_set, args.out)
            print(f"wrote {len(mask_set)} masks and {path} (sha256 {mask_set.sha256})")
        else:
            p.error("give --protocol and --out, --verify FOLDER, or --record-references")
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
