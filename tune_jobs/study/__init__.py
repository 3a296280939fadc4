"""The study record: where the study lives (storage), how every trial lands in it honestly
(mirror), what a search leaves behind (summary), and the live Ray metrics (live)."""
