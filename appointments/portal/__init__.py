"""The staff portal: the clinic's schedule, appointment pages and patients (pages; `access`
holds who may open them)."""
