# Laminar's authentication check, in JQ
if .input.apiKey != "{{config.validApiKey}}" then
  {"lam.response": {statusCode: 401, message: "Unauthorized: invalid API key"}}
else
  {authorized: true}
end
