# the previous step's response, reshaped
{
  user: .input.userId,
  open: (.step_1.response | length),
  total: ([.step_1.response[].amount] | add)
}
