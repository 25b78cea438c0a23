"""The waitlist: offering freed time to waiting patients (`matcher`, `offers`), the accept and
decline links of an offer (`links`, `respond`, `pages`). Entries and their write rules live
with the booking rules (`operations.scheduling.waitlist`)."""
