"""The study record: storage (where the study lives), mirror (how every trial lands in it
honestly; the only writer of its trials), writes (writes that wait out a database outage),
trials (the one typed view of a study trial, and the attribute names), ranking (which trials
are best), summary (what a search leaves behind), live (the live Ray metrics)."""
