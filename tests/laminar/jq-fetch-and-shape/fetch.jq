# Laminar's older program language: the GWO in, a directive out.
{
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/users/\(.input.userId)/orders",
    headers: {Authorization: "Bearer {{config.apiToken}}"},
    queryParams: {status: "open"}
  }
}
