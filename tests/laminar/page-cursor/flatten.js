(data) => ({
  names: data.step_1.response.flatMap((page) => page.items.map((c) => c.name)),
  pages: data.step_1.http.pagination.pages,
  stoppedBy: data.step_1.http.pagination.stoppedBy,
})
