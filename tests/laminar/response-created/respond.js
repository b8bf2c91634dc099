(data) => {
  return {
    "lam.response": {
      statusCode: 201,
      message: "Dispatch note created successfully",
      data: data.step_2.response,
    },
  };
};
