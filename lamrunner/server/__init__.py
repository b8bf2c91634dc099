"""`lamrunner serve`: the served workflows as an execution API with async jobs.

    jobs        the job core: every job a run in the run store, run by the engine, woken
                from the store when due (`JobService`, the typed `Job` record)
    scheduler   the waker: starts and resumes the due jobs, a bounded number in memory
    app, auth, callbacks, openapi   the HTTP side (aiohttp.web) over `JobService`
    views, static                    the runs page

Layers inside: the HTTP side and the page use `jobs`; `jobs` uses `scheduler`.
"""
