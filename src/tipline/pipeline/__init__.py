"""Enrichment pipeline: stages 2-5 of DESIGN.md, each a re-runnable function of stored records."""
