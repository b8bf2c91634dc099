// Laminar's documented authentication check: {{config.validApiKey}} is substituted into the
// program before it runs.
(data) => {
  if (data.input.apiKey !== "{{config.validApiKey}}") {
    return {
      "lam.response": {
        statusCode: 401,
        message: "Unauthorized: invalid API key",
        error: { hint: "ask {{config.supportEmail}} for a key" },
      },
    };
  }
  return { authorized: true };
}
